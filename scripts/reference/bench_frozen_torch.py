"""PyTorch CPU anchor for the frozen components, float32, no autocast. Prints one JSON line:
ae_decode_256_s (decode a latent [1,128,16,16]), ae_encode_256_s (encode an image [1,3,256,256]),
text_encode_2x32_s (tokenize two prompts of exactly 32 tokens, embed, AutoModel last_hidden_state),
each the median of R runs after one warm-up, and peak_rss_mb {workload: MB}. Each workload runs
in a fresh subprocess, so its peak RSS (getrusage maxrss: interpreter, libraries, weights and
activations) is its own.

usage: bench_frozen_torch.py --ae FILE --text-encoder DIR [--threads N] [--repeat R]
(FILE: an autoencoder checkpoint in the released layout, e.g. make_frozen.py --full-size's
flux2-ae.safetensors; DIR: a transformers Qwen3 directory with its tokenizer files)
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

WORKLOADS = ("ae_decode_256", "ae_encode_256", "text_encode_2x32")
TEXTS = ["a photo of a golden retriever puppy playing with a red ball on the green grass of a sunny park, "
         "while two children watch from a wooden bench under the old oak tree",
         "an orange tabby cat sleeping on a wooden table in the morning sun next to a cup of coffee, "
         "a croissant and a small vase of blue flowers by the open window"]


def prompt_of(tok, text, n):
    """The shortest prefix of text that tokenizes to exactly n tokens."""
    for end in range(1, len(text) + 1):
        if len(tok(text[:end]).input_ids) == n:
            return text[:end]
    raise ValueError(f"no prefix of {text!r} has {n} tokens")


def setup(name, a):
    """Returns a no-argument callable running the workload once."""
    torch.manual_seed(0)
    if name.startswith("ae_"):
        from safetensors.torch import load_file
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import aeref
        sd = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(a.ae).items()}
        ae = aeref.AE(aeref.config_from_state_dict(sd)).eval()
        ae.load_state_dict(sd, strict=True)
        del sd
        if name == "ae_decode_256":
            z = torch.randn(1, 4 * ae.z, 16, 16)
            return lambda: ae.decode(z)
        x = torch.rand(1, 3, 256, 256) * 2 - 1
        return lambda: ae.encode(x)
    from transformers import AutoModel, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(a.text_encoder)
    if not tok.pad_token:
        tok.pad_token = tok.eos_token
    model = AutoModel.from_pretrained(a.text_encoder, dtype=torch.float32).eval()
    prompts = [prompt_of(tok, t, 32) for t in TEXTS]

    def run():
        t = tok(prompts, padding="longest", truncation=True, max_length=256, return_tensors="pt")
        assert t.input_ids.shape == (2, 32)
        return model(attention_mask=t.attention_mask, inputs_embeds=model.embed_tokens(t.input_ids)).last_hidden_state
    return run


def worker(name, a):
    torch.set_num_threads(a.threads)
    fn = setup(name, a)
    times = []
    with torch.no_grad():
        for i in range(a.repeat + 1):
            t0 = time.perf_counter()
            fn()
            if i > 0:
                times.append(time.perf_counter() - t0)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"s": statistics.median(times), "peak_rss_mb": round(rss_mb, 1)}))


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ae", required=True)
    ap.add_argument("--text-encoder", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker, a)
    out, rss = {}, {}
    for name in WORKLOADS:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--ae", a.ae,
               "--text-encoder", a.text_encoder, "--threads", str(a.threads), "--repeat", str(a.repeat)]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        out[name + "_s"], rss[name] = r["s"], r["peak_rss_mb"]
    out.update(peak_rss_mb=rss, threads=a.threads, repeat=a.repeat, dtype="float32", torch=torch.__version__,
               cpu=cpu_model())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
