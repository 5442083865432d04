"""Write the PyTorch checkpoint fixtures of tests/golden/pt/: tiny DiT state dicts saved with
torch.save (the format of the released `model.pt`), and broken or hostile ones that mvdit must
refuse. The good files hold the tensors of tests/golden/g1-ctxproj.model.safetensors, so
`mvdit convert` output can be compared with that file exactly.

usage: make_pt.py [--out tests/golden/pt]

Nothing here ever loads a .pt file back: the hostile ones would run their payload under a
plain `torch.load(weights_only=False)`. Saving them only writes bytes.
The files (all torch.save zip archives unless said otherwise):

  plain.pt          an OrderedDict as nn.Module.state_dict() returns it (with its `_metadata`
                    attribute, so the pickle has a BUILD), float32, plus the released model's
                    constant all-ones buffers (input-norm gains, QK-norm and merge-norm weights)
  nested-model.pt   {"model": state dict, "step": ..., "args": {...}, "ema_decay": ...},
                    pickle protocol 4 (FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL)
  state-dict-params.pt  {"state_dict": {name: nn.Parameter}}: torch._utils._rebuild_parameter
  bf16.pt           plain, every tensor bfloat16
  f16-views.pt      float16, all tensors views into ONE shared storage (storage offsets)
  evil-os-system.pt      a state dict with a value whose __reduce__ is (os.system, ("echo hi",))
  evil-subprocess.pt     the same with subprocess.call(["echo", "hi"]), pickle protocol 4
  truncated.pt      a small checkpoint cut to 60% of its bytes (no central directory)
  short-storage.pt  a small checkpoint whose storage file holds fewer bytes than its tensor
  non-contiguous.pt a small checkpoint with a transposed (strided) tensor
  compressed.pt     a small checkpoint re-zipped with DEFLATE entries
  legacy.pt         a small checkpoint in the pre-1.6 (non-zip) torch.save format
"""
import argparse
import collections
import os
import subprocess
import zipfile

import torch
from safetensors import safe_open

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden")


def g1_state_dict():
    """The tensors of g1-ctxproj, in its file order, and its config."""
    f = safe_open(os.path.join(GOLDEN, "g1-ctxproj.model.safetensors"), "pt")
    import json
    cfg = json.loads(f.metadata()["config"])
    return collections.OrderedDict((k, f.get_tensor(k)) for k in f.keys()), cfg


def with_ones_buffers(sd, cfg):
    """The released model's constant gains, all ones (it is loaded with strict=False)."""
    out = collections.OrderedDict(sd)
    d, hd = cfg["hidden_size"], cfg["hidden_size"] // cfg["num_heads"]
    out["norm_img_input.weight"] = torch.ones(d)
    out["norm_text_input.weight"] = torch.ones(d)
    for i in range(cfg["depth"]):
        out[f"blocks.{i}.qk_norm.query_norm.weight"] = torch.ones(hd)
        out[f"blocks.{i}.qk_norm.key_norm.weight"] = torch.ones(hd)
        out[f"blocks.{i}.fused_mvsplit_norm1.weight"] = torch.ones(d)
        out[f"blocks.{i}.fused_mvsplit_norm2.weight"] = torch.ones(d)
    return out


def module_style(sd):
    """An OrderedDict carrying `_metadata`, as nn.Module.state_dict() returns it."""
    out = collections.OrderedDict(sd)
    out._metadata = collections.OrderedDict([("", {"version": 1})])
    return out


class Payload:
    """Pickles as a call of `fn(*args)`; torch.save writes that call, nothing runs it."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def small():
    return collections.OrderedDict([("a", torch.arange(6, dtype=torch.float32).reshape(2, 3)), ("b", torch.ones(4))])


def rezip(src, dst, edit=None, compression=zipfile.ZIP_STORED):
    """Copies the archive `src` to `dst` entry by entry; `edit(name, data)` may change data."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if edit is not None:
                data = edit(info.filename, data)
            zout.writestr(info.filename, data, compress_type=compression)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(GOLDEN, "pt"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    out = lambda name: os.path.join(args.out, name)

    sd, cfg = g1_state_dict()
    full = with_ones_buffers(sd, cfg)
    torch.save(module_style(full), out("plain.pt"))
    nested = {"model": module_style(full), "step": 1000, "ema_decay": 0.9999, "args": {"depth": cfg["depth"], "name": "g1", "bias": False, "lr": [1.5625e-4, None]}}
    torch.save(nested, out("nested-model.pt"), pickle_protocol=4)
    params = {"state_dict": {k: torch.nn.Parameter(v.clone()) for k, v in sd.items()}, "epoch": 3}
    torch.save(params, out("state-dict-params.pt"), pickle_protocol=5)
    torch.save(module_style(collections.OrderedDict((k, v.to(torch.bfloat16)) for k, v in full.items())), out("bf16.pt"))
    # One flat float16 storage; every tensor a contiguous view at its own offset.
    flat = torch.cat([v.reshape(-1) for v in sd.values()]).to(torch.float16)
    views, at = collections.OrderedDict(), 0
    for k, v in sd.items():
        views[k] = flat[at:at + v.numel()].view(v.shape)
        at += v.numel()
    torch.save(views, out("f16-views.pt"))

    evil = small()
    evil["c"] = Payload(os.system, ("echo hi",))
    torch.save(evil, out("evil-os-system.pt"))
    evil = small()
    evil["c"] = Payload(subprocess.call, (["echo", "hi"],))
    # protocol 4: STACK_GLOBAL 'subprocess' 'call' (protocol 2 would write Python 2's `commands.call`)
    torch.save(evil, out("evil-subprocess.pt"), pickle_protocol=4)

    tmp = out("small.tmp")
    torch.save(small(), tmp)
    data = open(tmp, "rb").read()
    open(out("truncated.pt"), "wb").write(data[: len(data) * 6 // 10])
    # storage 0 holds tensor `a` (6 floats = 24 bytes): keep 20 of them
    rezip(tmp, out("short-storage.pt"), lambda name, d: d[:20] if name.endswith("/data/0") else d)
    rezip(tmp, out("compressed.pt"), compression=zipfile.ZIP_DEFLATED)
    os.remove(tmp)
    torch.save(collections.OrderedDict([("a", torch.arange(6.0).reshape(2, 3).t()), ("b", torch.ones(4))]), out("non-contiguous.pt"))
    torch.save(small(), out("legacy.pt"), _use_new_zipfile_serialization=False)
    for name in sorted(os.listdir(args.out)):
        print(f"{name}: {os.path.getsize(out(name))} bytes")


if __name__ == "__main__":
    main()
