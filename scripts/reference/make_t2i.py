"""Text-to-image reference at tiny sizes, following the release's sample.py in float64:
the prompts and one empty prompt per image tokenized in one padded batch and encoded by
tests/golden/frozen/qwen3-tiny (transformers), Euler on the shifted grid s(t) = a·t/(1+(a−1)·t)
from t = 1 to 0 with guidance v = v_u + w·(v_c − v_u) (mvref's DiT), the final latents decoded
by tests/golden/frozen/ae-a.safetensors (aeref), image·0.5+0.5, ×255, clamped, truncated to uint8.

usage: make_t2i.py OUT_DIR      (from the repository root; writes into OUT_DIR:)
  dit.safetensors     the DiT (released tensor names, metadata config), float32
  dit.pt              the same state dict through torch.save; dit-nested.pt under {"model": ...}
  noise.safetensors   noise [B, 16, 4, 4] float32 (the initial latents, for --noise)
  case.safetensors    latent [B, 16, 4, 4] float32 (final latents), image [B, 32, 32, 3] uint8;
                      metadata prompts (JSON), steps, cfg, shift, size
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
import aeref  # noqa: E402
import mvref  # noqa: E402
from make_frozen import text_encode  # noqa: E402

CFG = {"in_channels": 16, "patch_size": 1, "hidden_size": 64, "depth": 3, "num_heads": 2,
       "mlp_hidden_dim": 128, "qkv_bias": False, "context_dim": 64, "rope_base": 10000}
PROMPTS = ["a red cat on a wall", "two dogs"]
STEPS, W, SHIFT, SIZE = 3, 2.0, 4.0, 32


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    frozen = "tests/golden/frozen"
    p = mvref.init_params(CFG, seed=11, jitter=0.3)
    p = {k: v.float().contiguous() for k, v in p.items()}
    save_file(p, os.path.join(out, "dit.safetensors"), metadata={"config": mvref.config_json(CFG)})
    torch.save(p, os.path.join(out, "dit.pt"))
    torch.save({"model": p}, os.path.join(out, "dit-nested.pt"))
    pd = {k: v.double() for k, v in p.items()}

    n = len(PROMPTS)
    _, _, ctx = text_encode(os.path.join(frozen, "qwen3-tiny"), PROMPTS + [""] * n)
    c_cond, c_uncond = ctx[:n].double(), ctx[n:].double()

    sd = load_file(os.path.join(frozen, "ae-a.safetensors"))
    ae = aeref.AE(aeref.config_from_state_dict(sd)).double()
    ae.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in sd.items()})
    ae.eval()
    f = ae.factor()
    h = SIZE // f
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(n, CFG["in_channels"], h, h, generator=g, dtype=torch.float32)
    save_file({"noise": noise}, os.path.join(out, "noise.safetensors"))

    x = noise.double()
    with torch.no_grad():
        for i in range(STEPS, 0, -1):
            t, t1 = i / STEPS, (i - 1) / STEPS
            dt = t * SHIFT / (1 + (SHIFT - 1) * t) - t1 * SHIFT / (1 + (SHIFT - 1) * t1)
            vc = mvref.forward(pd, CFG, x, c_cond)
            vu = mvref.forward(pd, CFG, x, c_uncond)
            x = x + dt * (vu + W * (vc - vu))
        img = ae.decode(x)
    u8 = (img.mul(0.5).add(0.5).mul(255.0).clamp(0, 255)).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    meta = {"prompts": json.dumps(PROMPTS), "steps": str(STEPS), "cfg": str(W), "shift": str(SHIFT), "size": str(SIZE)}
    save_file({"latent": x.float(), "image": u8}, os.path.join(out, "case.safetensors"), metadata=meta)
    print("latent std", float(x.std()), "image range", int(u8.min()), int(u8.max()))


if __name__ == "__main__":
    main()
