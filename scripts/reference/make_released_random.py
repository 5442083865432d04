"""A randomly initialised DiT of the released shape (configs/released-1000.json: 1000 blocks,
width 1024, 13.64 B parameters) in bf16 (27.3 GB), written without holding it in memory.
Block 0 is mvref's initialisation; every later block is block 0's tensors cyclically shifted by
a random offset (as random as a benchmark needs, and fast).

- `OUT.safetensors`: the header first, then one tensor at a time; the config goes into metadata
  key `config`, as mvdit checkpoints.
- `OUT.pt`: a genuine `torch.save` checkpoint, as the authors publish `model.pt`. torch writes
  the container from fake tensors with `torch.serialization.skip_data` (no tensor memory), then
  this script fills each storage's bytes in place and mends the zip's CRC-32 fields; at the end
  `torch.load(weights_only=True)` reads it back (see `check_pt`).
  `--nested` puts the state dict under `model`, as `sample.py` also accepts.

usage: make_released_random.py OUT.safetensors|OUT.pt [--depth N] [--nested]   (needs torch, numpy)
"""
import argparse
import json
import os
import struct
import sys
import zipfile
import zlib
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import mvref  # noqa: E402


def bf16_bytes(t):
    """float32 tensor → bf16 little-endian bytes (round to nearest even)."""
    return t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()


def model(depth):
    """(config, [(name, shape)], tensor(i) → bf16 bytes) for a random DiT of this depth."""
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    cfg = json.load(open(os.path.join(root, "configs", "released-1000.json")))
    model_cfg = {k: v for k, v in cfg.items() if k not in ("image_size", "context_tokens")}
    model_cfg["depth"] = depth
    p0 = mvref.init_params(dict(model_cfg, depth=1), seed=0)
    stem = [(k, v) for k, v in p0.items() if not k.startswith("blocks.")]
    block = [(k[len("blocks.0."):], v) for k, v in p0.items() if k.startswith("blocks.0.")]
    entries = [(k, list(v.shape), v, None) for k, v in stem]
    for i in range(depth):
        entries += [(f"blocks.{i}.{k}", list(v.shape), v, i) for k, v in block]
    rng = np.random.default_rng(1)

    def data(e):
        name, _, v, i = e
        flat = v.flatten()
        if i and flat.numel() > 1 and not name.endswith((".alpha", ".beta")):
            flat = torch.roll(flat, int(rng.integers(1, flat.numel())))
        return bf16_bytes(flat)

    return model_cfg, entries, data


def progress(e, last):
    i = e[3]
    if i is not None and i % 100 == 99 and last[0] != i:
        last[0] = i
        print(f"{i + 1} blocks written", file=sys.stderr)


def write_safetensors(out, model_cfg, entries, data):
    header, off = {}, 0
    for name, shape, _, _ in entries:
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + size]}
        off += size
    header["__metadata__"] = {"config": json.dumps(model_cfg, sort_keys=True)}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp, last = out + ".partial", [None]
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for e in entries:
            f.write(data(e))
            progress(e, last)
    os.replace(tmp, out)
    return off


def write_pt(out, entries, data, nested):
    """torch.save of fake tensors (storage keys "0", "1", ... in state-dict order), then the bytes."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        sd = OrderedDict((n, torch.empty(shape, dtype=torch.bfloat16)) for n, shape, _, _ in entries)
    tmp, last = out + ".partial", [None]
    with torch.serialization.skip_data(materialize_fake_tensors=True):
        torch.save({"model": sd} if nested else sd, tmp)
    del sd
    z = zipfile.ZipFile(tmp)
    infos = {zi.filename: zi for zi in z.infolist()}
    prefix = z.infolist()[0].filename.split("/")[0]
    crcs, off = {}, 0
    with open(tmp, "r+b") as f:
        for key, e in enumerate(entries):
            zi = infos[f"{prefix}/data/{key}"]
            f.seek(zi.header_offset)
            local = f.read(30)
            assert local[:4] == b"PK\x03\x04" and zi.compress_type == zipfile.ZIP_STORED
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            b = data(e)
            assert len(b) == zi.file_size, (e[0], len(b), zi.file_size)
            f.seek(zi.header_offset + 30 + name_len + extra_len)
            f.write(b)
            crc = zlib.crc32(b)
            f.seek(zi.header_offset + 14)
            f.write(struct.pack("<I", crc))
            crcs[zi.filename] = crc
            off += len(b)
            progress(e, last)
        # The central directory's copies of the CRCs.
        f.seek(z.start_dir)
        while True:
            pos = f.tell()
            h = f.read(46)
            if h[:4] != b"PK\x01\x02":
                break
            name_len, extra_len, comment_len = struct.unpack("<HHH", h[28:34])
            name = f.read(name_len).decode()
            if name in crcs:
                f.seek(pos + 16)
                f.write(struct.pack("<I", crcs[name]))
            f.seek(pos + 46 + name_len + extra_len + comment_len)
    z.close()
    check_pt(tmp, entries, data, nested)
    os.replace(tmp, out)
    return off


def check_pt(path, entries, data_of, nested):
    """torch itself reads the file: the names, shapes and dtypes (under `skip_data`, so no
    storage is read), and for files that fit in memory the values (memory-mapped). The zip's
    CRC-32s and bytes are checked for a few entries at any size."""
    with torch.serialization.skip_data():
        sd = torch.load(path, weights_only=True, map_location="cpu")
    sd = sd["model"] if nested else sd
    assert list(sd) == [e[0] for e in entries]
    assert all(list(sd[n].shape) == shape and sd[n].dtype == torch.bfloat16 for n, shape, _, _ in entries)
    del sd
    unshifted = [entries[0]] + [e for e in entries if e[3] == 0][:3]  # the stem and block 0
    with zipfile.ZipFile(path) as z:
        names = {e[0]: n for e, n in zip(entries, sorted((n for n in z.namelist() if "/data/" in n), key=lambda n: int(n.rsplit("/", 1)[1])))}
        for e in unshifted:
            assert z.read(names[e[0]]) == data_of(e), e[0]  # z.read also checks the CRC-32
        for n in list(names.values())[-2:]:
            z.read(n)
    if os.path.getsize(path) < 2e9:
        sd = torch.load(path, mmap=True, weights_only=True, map_location="cpu")
        sd = sd["model"] if nested else sd
        for name, _, v, _ in unshifted:
            assert torch.equal(sd[name], v.to(torch.bfloat16)), name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--depth", type=int, default=1000)
    ap.add_argument("--nested", action="store_true", help=".pt only: the state dict under `model`")
    a = ap.parse_args()
    model_cfg, entries, data = model(a.depth)
    if a.out.endswith(".pt"):
        n = write_pt(a.out, entries, data, a.nested)
    else:
        n = write_safetensors(a.out, model_cfg, entries, data)
    print(f"{a.out}: {len(entries)} tensors, {n / 1e9:.1f} GB of bf16 data")


if __name__ == "__main__":
    main()
