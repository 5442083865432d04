"""Relative error per tensor of `mvdit eval --grad` outputs against the golden cases.

usage: golden_compare.py GOLDEN_DIR OUT_DIR CASE...   (numpy + safetensors; used by scripts/gpu-check)"""
import sys
from safetensors.numpy import load_file
import numpy as np
worst_all = 0.0
for case in sys.argv[3:]:
    want = load_file(f"{sys.argv[1]}/{case}.case.safetensors")
    got = load_file(f"{sys.argv[2]}/{case}.safetensors")
    worst, wname, n = 0.0, "", 0
    for k, w in want.items():
        if not (k.startswith("output.") or k.startswith("grad.")):
            continue
        g = got[k].astype(np.float64); w = w.astype(np.float64)
        e = np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30)
        n += 1
        if e > worst: worst, wname = e, k
    worst_all = max(worst_all, worst)
    print(f"{case}: {n} tensors, worst rel err {worst:.2e} ({wname})")
print(f"ALL worst {worst_all:.2e}")
