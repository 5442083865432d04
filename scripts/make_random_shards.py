"""A shard set of random latents in `mvdit prepare`'s format, for benchmarks of training from
shards: `latent` [N, C, h, w] bf16 (N(0, 1) values, the released model's 128 × 16 × 16 by
default: 64 KiB a sample) and `label` [N] int64 of `--classes` classes, `shards.json` with
kind "classes". Written one shard at a time (host memory: one shard), each shard atomically.

usage: make_random_shards.py OUT_DIR [--gb 20] [--shard-size 2048] [--shape 128,16,16]
       [--classes 1000] [--seed 0]                                   (needs numpy only)
"""
import argparse
import json
import os
import struct

import numpy as np


def bf16_bytes(x):
    """float32 array → bf16 little-endian bytes (round to nearest even)."""
    u = x.astype(np.float32).view(np.uint32)
    u = u + 0x7FFF + ((u >> 16) & 1)
    return (u >> 16).astype("<u2").tobytes()


def write_shard(path, latents, labels, shape):
    n = len(labels)
    lat = bf16_bytes(latents)
    lab = labels.astype("<i8").tobytes()
    header = {
        "label": {"dtype": "I64", "shape": [n], "data_offsets": [0, len(lab)]},
        "latent": {"dtype": "BF16", "shape": [n, *shape], "data_offsets": [len(lab), len(lab) + len(lat)]},
    }
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        f.write(lab)
        f.write(lat)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--gb", type=float, default=20.0)
    ap.add_argument("--shard-size", type=int, default=2048)
    ap.add_argument("--shape", default="128,16,16")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    shape = [int(v) for v in a.shape.split(",")]
    per = 2 * int(np.prod(shape))
    total = int(a.gb * 1e9) // per
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    shards, k = [], 0
    for start in range(0, total, a.shard_size):
        n = min(a.shard_size, total - start)
        name = f"shard-{k:05d}.safetensors"
        path = os.path.join(a.out, name)
        if not (os.path.exists(path) and os.path.getsize(path) > n * per):
            write_shard(path, rng.standard_normal((n, *shape), dtype=np.float32), rng.integers(0, a.classes, n), shape)
        shards.append({"file": name, "count": n, "context_tokens": 0})
        k += 1
    index = {
        "count": total,
        "kind": "classes",
        "latent_shape": shape,
        "dtype": "bf16",
        "shards": shards,
        "class_names": [str(c) for c in range(a.classes)],
        "made_by": "scripts/make_random_shards.py (random latents)",
    }
    with open(os.path.join(a.out, "shards.json"), "w") as f:
        json.dump(index, f, indent=1)
    print(f"{a.out}: {total} samples in {len(shards)} shards, {total * per / 1e9:.1f} GB of latents")


if __name__ == "__main__":
    main()
