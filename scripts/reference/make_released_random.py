"""A randomly initialised DiT of the released shape (configs/released-1000.json: 1000 blocks,
width 1024, 13.64 B parameters) written as one bf16 safetensors file (27.3 GB) without holding
it in memory: the header first, then one tensor at a time. Block 0 is mvref's initialisation;
every later block is block 0's tensors cyclically shifted by a random offset (as random as a
benchmark needs, and fast). The config goes into metadata key `config`, as mvdit checkpoints.

usage: make_released_random.py OUT.safetensors [--depth N]   (needs torch, numpy)
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import mvref  # noqa: E402


def bf16_bytes(t):
    """float32 tensor → bf16 little-endian bytes (round to nearest even)."""
    return t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--depth", type=int, default=1000)
    a = ap.parse_args()
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    cfg = json.load(open(os.path.join(root, "configs", "released-1000.json")))
    model_cfg = {k: v for k, v in cfg.items() if k not in ("image_size", "context_tokens")}
    model_cfg["depth"] = a.depth
    one = dict(model_cfg, depth=1)
    p0 = mvref.init_params(one, seed=0)
    stem = {k: v for k, v in p0.items() if not k.startswith("blocks.")}
    block = {k[len("blocks.0."):]: v for k, v in p0.items() if k.startswith("blocks.0.")}
    names = []
    for k, v in stem.items():
        names.append((k, list(v.shape)))
    for i in range(a.depth):
        for k, v in block.items():
            names.append((f"blocks.{i}.{k}", list(v.shape)))
    header, off = {}, 0
    for n, shape in names:
        size = 2 * int(np.prod(shape))
        header[n] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + size]}
        off += size
    header["__metadata__"] = {"config": json.dumps(model_cfg, sort_keys=True)}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    rng = np.random.default_rng(1)
    tmp = a.out + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for k, v in stem.items():
            f.write(bf16_bytes(v))
        for i in range(a.depth):
            for k, v in block.items():
                flat = v.flatten()
                if i > 0 and flat.numel() > 1 and not k.endswith((".alpha", ".beta")):
                    flat = torch.roll(flat, int(rng.integers(1, flat.numel())))
                f.write(bf16_bytes(flat))
            if i % 100 == 99:
                print(f"{i + 1} blocks written", file=sys.stderr)
    os.replace(tmp, a.out)
    print(f"{a.out}: {len(names)} tensors, {off / 1e9:.1f} GB of bf16 data")


if __name__ == "__main__":
    main()
