"""Write the frozen-component fixtures of tests/golden/frozen/: tiny FLUX.2 autoencoders and a
tiny Qwen3 text encoder with its tokenizer, plus float64 reference outputs (stored as float32).

usage: make_frozen.py [--out tests/golden/frozen] [--seed 0]
       make_frozen.py --full-size OUTDIR     random weights in the real layouts and sizes:
                                              OUTDIR/flux2-ae.safetensors, OUTDIR/qwen3-0.6b/

Needs torch, safetensors, transformers, tokenizers. The file formats: tests/golden/frozen/README.md.
Text cases follow the released text_encoder.py: tokenizer(texts, padding="longest",
truncation=True, max_length=256), inputs_embeds = embed_tokens(ids), then
AutoModel(attention_mask=..., inputs_embeds=...).last_hidden_state, here in float64, no autocast.
"""
import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

import aeref

AE_CONFIGS = {
    # 3 levels (two Downsample / Upsample), mid attention, no channel change; stored in float32
    "ae-a": dict(ch=32, ch_mult=[1, 1, 1], num_res_blocks=1, z_channels=4),
    # channel changes both ways (nin_shortcut in encoder and decoder), 2 res blocks; stored in bfloat16
    "ae-b": dict(ch=32, ch_mult=[2, 1], num_res_blocks=2, z_channels=8),
}
AE_CASES = {"ae-a": (torch.float32, 2, 32, 16), "ae-b": (torch.bfloat16, 2, 24, 40)}
FULL_AE = dict(ch=128, ch_mult=[1, 2, 4, 4], num_res_blocks=2, z_channels=32)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2 / Qwen3 pre-tokenizer regex (tokenizer.json "Split" pattern)
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
              r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CORPUS = """a photo of a cat sitting on a red sofa next to the window
the quick brown fox jumps over the lazy dog in the green field
a close-up photograph of a golden retriever puppy playing with a ball
an orange tabby cat sleeping on a wooden table in the morning sun
a small sailing boat on a calm blue lake with mountains in the background
two children riding bicycles along a sandy beach at sunset
a bowl of fresh strawberries and blueberries on a white plate
a vintage car parked on a cobblestone street in an old european town
a snowy mountain peak under a clear blue sky, with pine trees below
a cup of coffee and a croissant on a marble counter in a small cafe
the red panda climbs a tall tree while the zookeeper watches
a tiger walking through tall grass, photographed from a distance
a lighthouse on a rocky coast during a storm with large waves
a plate of spaghetti with tomato sauce and basil leaves
a black and white photo of a city street at night with neon signs
an owl perched on a branch in a dark forest, looking at the camera
a hot air balloon floating over a valley of vineyards in the early morning
It's a bird! It's a plane! They're 100% sure it'll land at 10:30.
Café, crème brûlée, naïve, façade, jalapeño, über, smörgåsbord.
Numbers: 0 1 2 3 4 5 6 7 8 9, 2024, 3.14159, #42 (x+y)=z; a/b - c*d.
"""
TOK_VOCAB = 397  # byte-level BPE vocab (256 bytes + merges) before the three special tokens
TINY_QWEN = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, rope_theta=10000.0,
                 max_position_embeddings=1024)
# The published Qwen/Qwen3-0.6B config.json, values as released
QWEN3_06B_CONFIG = {
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
    "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None,
    "tie_word_embeddings": True, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
    "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
}
PROMPTS = [
    "",  # the unconditional prompt: a row of padding only
    "a photo of a cat",
    "Cre\u0300me bru\u0302le\u0301e \u00e0 Paris, \u6771\u4eac\u30bf\u30ef\u30fc \U0001F5FC and na\u00efve caf\u00e9 \u2615",
    "a red bicycle leaning on a wall  \n\n  ",
    "It's 2024: <|im_end|> DON'T stop!",
]


# ---------------------------------------------------------------- autoencoder

def bf16_round(sd):
    return {k: (v.to(torch.bfloat16).double() if v.is_floating_point() else v) for k, v in sd.items()}


def make_ae_case(out, name, seed):
    cfg = AE_CONFIGS[name]
    dtype, B, H, W = AE_CASES[name]
    gen = torch.Generator().manual_seed(seed)
    ae = aeref.randomize(aeref.AE(cfg).double(), gen)
    sd = ae.state_dict()
    if dtype == torch.bfloat16:
        sd = bf16_round(sd)
        ae.load_state_dict(sd)
    stored = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    meta = {"config": json.dumps(cfg)}
    save_file(stored, os.path.join(out, name + ".safetensors"), metadata=meta)
    image = torch.rand(B, 3, H, W, generator=gen, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        latent = ae.encode(image)
        decoded = ae.decode(latent.float().double())  # decode of the stored (float32) latent
    case = {"image": image.float(), "latent": latent.float(), "decoded": decoded.float()}
    save_file({k: v.contiguous() for k, v in case.items()}, os.path.join(out, name + ".case.safetensors"),
              metadata=meta)
    print(name, {k: tuple(v.shape) for k, v in case.items()}, "latent std %.3f decoded std %.3f"
          % (latent.std(), decoded.std()))


# ---------------------------------------------------------------- tokenizer

def make_tokenizer(out_dir, padding_side=None):
    """Byte-level BPE set up like Qwen's tokenizer.json; special tokens get the ids after the BPE vocab."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, \
        processors, trainers
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TOK_VOCAB, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.splitlines() * 4, trainer)
    assert tok.get_vocab_size() == TOK_VOCAB, tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    j = json.loads(tok.to_str())
    # Qwen's serialisation: empty affixes, merges as "a b" strings, ByteLevel decoder flags off
    j["model"].update(continuing_subword_prefix="", end_of_word_suffix="")
    j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    j["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    write_tokenizer(out_dir, j, padding_side)
    return j


def write_tokenizer(out_dir, tok_json, padding_side=None):
    """tokenizer.json plus a tokenizer_config.json with the keys of Qwen3's (no chat template)."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False, indent=2)
    added = {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
             for t in tok_json["added_tokens"]}
    cfg = {
        "add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "bos_token": None,
        "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 131072, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }
    if padding_side:
        cfg["padding_side"] = padding_side
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)


def copy_tokenizer(src, dst, padding_side=None):
    with open(os.path.join(src, "tokenizer.json"), encoding="utf-8") as f:
        write_tokenizer(dst, json.load(f), padding_side)


# ---------------------------------------------------------------- text encoder

def qwen_config(vocab, **kw):
    from transformers import Qwen3Config
    kw = dict(kw)
    theta = kw.pop("rope_theta")
    return Qwen3Config(vocab_size=vocab, tie_word_embeddings=True, hidden_act="silu", attention_bias=False,
                       rope_parameters={"rope_type": "default", "rope_theta": theta}, **kw)


def randomize_qwen(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float64))


def text_encode(model_dir, prompts, tok_dir=None):
    """The released text encoder's computation in float64: returns ids, mask, last_hidden_state."""
    from transformers import AutoModel, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tok_dir or model_dir)
    if not tok.pad_token:
        tok.pad_token = tok.eos_token
    t = tok(prompts, padding="longest", truncation=True, max_length=256, return_tensors="pt")
    model = AutoModel.from_pretrained(model_dir).double().eval()
    with torch.no_grad():
        h = model(input_ids=None, attention_mask=t.attention_mask,
                  inputs_embeds=model.embed_tokens(t.input_ids)).last_hidden_state
    return t.input_ids, t.attention_mask, h


def reference_text_encode(model_dir, ids, mask):
    """Independent float64 Qwen3 forward with the masked-row rule of transformers' sdpa path on CPU:
    query q attends to keys k <= q with mask[k] = 1; a query with no such key gets a zero attention
    output (o_proj input 0). Positions are 0..L-1 whatever the padding. Used as a cross-check."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    sd = {k.removeprefix("model."): v.double() for k, v in load_file(
        os.path.join(model_dir, "model.safetensors")).items()}
    eps, nh, nkv, hd = cfg["rms_norm_eps"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    theta = cfg.get("rope_theta") or cfg["rope_parameters"]["rope_theta"]

    def rms(x, w):
        return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)

    def rope(x):  # x [B, heads, L, hd], rotate-half
        L = x.shape[2]
        inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.arange(L, dtype=torch.float64)[:, None] * inv[None]
        cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    B, L = ids.shape
    x = sd["embed_tokens.weight"][ids]
    allowed = torch.tril(torch.ones(L, L, dtype=torch.bool))[None] & mask.bool()[:, None, :]  # [B, q, k]
    for i in range(cfg["num_hidden_layers"]):
        p = lambda n: sd[f"layers.{i}.{n}"]  # noqa: E731
        h = rms(x, p("input_layernorm.weight"))
        q = rms((h @ p("self_attn.q_proj.weight").T).view(B, L, nh, hd), p("self_attn.q_norm.weight")).transpose(1, 2)
        k = rms((h @ p("self_attn.k_proj.weight").T).view(B, L, nkv, hd), p("self_attn.k_norm.weight")).transpose(1, 2)
        v = (h @ p("self_attn.v_proj.weight").T).view(B, L, nkv, hd).transpose(1, 2)
        q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
        s = (q @ k.transpose(-1, -2)) / hd ** 0.5
        s = s.masked_fill(~allowed[:, None], float("-inf"))
        a = torch.softmax(s, -1).nan_to_num(0.0)  # rows without any allowed key -> 0
        o = (a @ v).transpose(1, 2).reshape(B, L, nh * hd)
        x = x + o @ p("self_attn.o_proj.weight").T
        h = rms(x, p("post_attention_layernorm.weight"))
        g = h @ p("mlp.gate_proj.weight").T
        x = x + (torch.nn.functional.silu(g) * (h @ p("mlp.up_proj.weight").T)) @ p("mlp.down_proj.weight").T
    return rms(x, sd["norm.weight"])


def save_text_case(path, model_dir, prompts, tok_dir=None):
    ids, mask, h = text_encode(model_dir, prompts, tok_dir)
    ref = reference_text_encode(model_dir, ids, mask)
    err = (ref - h).abs().max().item()
    assert torch.isfinite(h).all() and err < 1e-4, err
    meta = {"prompts": json.dumps(prompts, ensure_ascii=False), "model": os.path.basename(model_dir)}
    save_file({"input_ids": ids.to(torch.int64).contiguous(), "attention_mask": mask.to(torch.int64).contiguous(),
               "last_hidden_state": h.float().contiguous()}, path, metadata=meta)
    print(os.path.basename(path), tuple(ids.shape), "mask sums", mask.sum(1).tolist(),
          "max |transformers - independent| %.2e" % err)
    return h


def make_qwen(out, seed):
    from transformers import AutoTokenizer, Qwen3ForCausalLM
    tiny = os.path.join(out, "qwen3-tiny")
    tok_json = make_tokenizer(tiny)
    n_tok = tok_json["added_tokens"][-1]["id"] + 1
    vocab = -(-n_tok // 64) * 64
    ids = {t["content"]: t["id"] for t in tok_json["added_tokens"]}
    cfg = qwen_config(vocab, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], **TINY_QWEN)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(cfg)
    randomize_qwen(model, torch.Generator().manual_seed(seed))
    model.to(torch.bfloat16).save_pretrained(tiny)
    # the same (bf16-rounded) weights in float32, in shards
    sharded = os.path.join(out, "qwen3-tiny-sharded")
    model.to(torch.float32).save_pretrained(sharded, max_shard_size="150KB")
    copy_tokenizer(tiny, sharded)
    # left padding: same model files, tokenizer_config.json with padding_side "left"
    left = os.path.join(out, "qwen3-tiny-left")
    os.makedirs(left, exist_ok=True)
    for f in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(os.path.join(tiny, f), left)
    copy_tokenizer(tiny, left, padding_side="left")
    for d in (tiny, left):
        check_tokenizer(d)
    h = save_text_case(os.path.join(out, "qwen3-tiny.case.safetensors"), tiny, PROMPTS)
    assert torch.equal(text_encode(sharded, PROMPTS)[2], h), "sharded float32 copy differs"
    long_prompt = " ".join(CORPUS.splitlines()[:12])
    print("long prompt:", len(AutoTokenizer.from_pretrained(tiny)(long_prompt).input_ids), "tokens before truncation")
    save_text_case(os.path.join(out, "qwen3-tiny-long.case.safetensors"), tiny, [long_prompt, "a dog"])
    save_text_case(os.path.join(out, "qwen3-tiny-left.case.safetensors"), left, PROMPTS)


def check_tokenizer(d):
    """transformers' tokenizer (which rebuilds the pipeline in Qwen2Tokenizer) must equal tokenizer.json's."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    hf, raw = AutoTokenizer.from_pretrained(d), Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    for p in PROMPTS + CORPUS.splitlines():
        a, b = hf(p).input_ids, raw.encode(p).ids
        assert a == b, (p, a, b)
        assert hf.decode(a) == raw.decode(b, skip_special_tokens=False), (hf.decode(a), raw.decode(b, skip_special_tokens=False))
    assert hf.padding_side == json.load(open(os.path.join(d, "tokenizer_config.json"))).get("padding_side", "right")


# ---------------------------------------------------------------- full size

def make_full_size(outdir, tok_src):
    from transformers import AutoModel, AutoTokenizer, Qwen3Config, Qwen3ForCausalLM
    os.makedirs(outdir, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    ae = aeref.randomize(aeref.AE(FULL_AE), gen)
    sd = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous() for k, v in ae.state_dict().items()}
    ae_path = os.path.join(outdir, "flux2-ae.safetensors")
    save_file(sd, ae_path)
    back = aeref.AE(FULL_AE)
    back.load_state_dict(load_file(ae_path), strict=True)
    with torch.no_grad():
        print("flux2-ae:", sum(v.numel() for v in sd.values()), "values; decode",
              tuple(back.decode(torch.randn(1, 128, 4, 4)).shape))
    del ae, back, sd
    qdir = os.path.join(outdir, "qwen3-0.6b")
    cfg = Qwen3Config(**{k: v for k, v in QWEN3_06B_CONFIG.items() if k not in ("architectures", "transformers_version")})
    model = Qwen3ForCausalLM(cfg).to(torch.bfloat16)  # default (std 0.02) random init
    model.save_pretrained(qdir)
    del model
    with open(os.path.join(qdir, "config.json"), "w") as f:  # the published file's format and values
        json.dump(QWEN3_06B_CONFIG, f, indent=2)
    # the published model.safetensors also stores lm_head.weight (a copy of the tied embedding)
    st = os.path.join(qdir, "model.safetensors")
    w = load_file(st)
    w["lm_head.weight"] = w["model.embed_tokens.weight"].clone()
    save_file(w, st, metadata={"format": "pt"})
    del w
    copy_tokenizer(tok_src, qdir)
    m = AutoModel.from_pretrained(qdir)
    t = AutoTokenizer.from_pretrained(qdir)
    print("qwen3-0.6b:", sum(p.numel() for p in m.parameters()), "parameters,", m.dtype,
          "rope_theta", m.config.rope_parameters["rope_theta"], "tokens", t("a photo of a cat").input_ids)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/golden/frozen")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full-size", metavar="OUTDIR")
    a = ap.parse_args()
    torch.set_default_dtype(torch.float32)
    if a.full_size:
        make_full_size(a.full_size, os.path.join(a.out, "qwen3-tiny"))
        return
    os.makedirs(a.out, exist_ok=True)
    for i, name in enumerate(AE_CONFIGS):
        make_ae_case(a.out, name, a.seed + i)
    make_qwen(a.out, a.seed + 10)


if __name__ == "__main__":
    sys.exit(main())
