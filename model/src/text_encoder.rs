//! The Qwen3 text encoder (forward only) over any backend: prompts → the last hidden states
//! [B, L, E] that condition the DiT, as `AutoModel` gives `last_hidden_state`.
//!
//! A layer: h = x + o(attn(RMSNorm(x))), out = h + down(silu(gate(RMSNorm(h))) ⊙ up(·)), with
//! per-head RMSNorm of q and k before the 1-D rotary embedding, grouped KV heads, a causal and
//! padding mask; a final RMSNorm. Letters: B prompts, L tokens, E hidden, Hq/Hkv heads of Dh,
//! M MLP width, V vocabulary.

use crate::error::{Error, Result};
use crate::prompts::{PromptTokenizer, TokenBatch};
use crate::weights::WeightFile;
use mvdit_core::ops::{self, Heads};
use mvdit_core::Backend;
use std::path::Path;

/// The fields of `config.json` the encoder needs.
#[derive(Clone, Debug, PartialEq)]
pub struct TextEncoderConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub rms_eps: f64,
    pub rope_theta: f64,
}

impl TextEncoderConfig {
    /// Reads `config.json` of the model directory `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::new(format!("{}: not a directory (the text encoder is a model directory)", dir.display())));
        }
        let cj = dir.join("config.json");
        let text = std::fs::read_to_string(&cj).map_err(|e| Error::new(format!("{}: cannot read: {e}", cj.display())))?;
        Self::parse(&text, &cj.display().to_string())
    }

    /// Parses a Hugging Face Qwen3 `config.json`; `origin` names it in errors.
    pub fn parse(json: &str, origin: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| Error::new(format!("{origin}: not JSON ({e})")))?;
        let uint = |f: &str| -> Result<usize> {
            v.get(f).and_then(|x| x.as_u64()).filter(|&n| n > 0).map(|n| n as usize).ok_or_else(|| Error::new(format!("{origin}: field `{f}` missing or not a positive integer")))
        };
        let float = |x: Option<&serde_json::Value>, f: &str| -> Result<f64> {
            x.and_then(|x| x.as_f64()).filter(|x| *x > 0.0 && x.is_finite()).ok_or_else(|| Error::new(format!("{origin}: field `{f}` missing or not a positive number")))
        };
        let (hidden, heads) = (uint("hidden_size")?, uint("num_attention_heads")?);
        let head_dim = if v.get("head_dim").is_some_and(|x| !x.is_null()) { uint("head_dim")? } else { hidden / heads };
        // Newer transformers write the rotary base under `rope_parameters`.
        let theta = match v.get("rope_theta") {
            Some(t) => float(Some(t), "rope_theta")?,
            None => float(v.get("rope_parameters").and_then(|p| p.get("rope_theta")), "rope_parameters.rope_theta")?,
        };
        let cfg = TextEncoderConfig {
            hidden,
            layers: uint("num_hidden_layers")?,
            heads,
            kv_heads: uint("num_key_value_heads")?,
            head_dim,
            intermediate: uint("intermediate_size")?,
            vocab: uint("vocab_size")?,
            rms_eps: float(v.get("rms_norm_eps"), "rms_norm_eps")?,
            rope_theta: theta,
        };
        if !cfg.heads.is_multiple_of(cfg.kv_heads) || cfg.head_dim % 2 != 0 {
            return Err(Error::new(format!("{origin}: {} attention heads over {} KV heads of {} (heads must be a multiple of KV heads, head_dim even)", cfg.heads, cfg.kv_heads, cfg.head_dim)));
        }
        Ok(cfg)
    }
}

struct Layer<T> {
    in_norm: T,
    q: T,
    k: T,
    v: T,
    o: T,
    q_norm: T,
    k_norm: T,
    post_norm: T,
    /// gate_proj then up_proj stacked: [2M, E], the layout `swiglu` reads.
    gate_up: T,
    down: T,
}

/// The encoder's weights on a backend, with its tokenizer.
pub struct TextEncoder<B: Backend> {
    pub cfg: TextEncoderConfig,
    pub tokenizer: PromptTokenizer,
    embed: B::Tensor,
    layers: Vec<Layer<B::Tensor>>,
    norm: B::Tensor,
}

/// Encoded prompts: `context` [B, L, E] and `mask` [B, L] (1 token, 0 padding).
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    pub context: Vec<f32>,
    pub tokens: TokenBatch,
    pub hidden: usize,
}

impl<B: Backend> TextEncoder<B> {
    /// Loads a Hugging Face model directory as downloaded: `config.json`, `model.safetensors`
    /// (or shards with `model.safetensors.index.json`), `tokenizer.json`,
    /// `tokenizer_config.json`. Weight names with or without `Qwen3ForCausalLM`'s `model.` prefix.
    pub fn load(be: &B, dir: &Path) -> Result<Self> {
        let cfg = TextEncoderConfig::read(dir)?;
        let tokenizer = PromptTokenizer::load(dir)?;
        let w = WeightFile::open_dir(dir)?;
        let prefix = if w.contains("model.embed_tokens.weight") { "model." } else { "" };
        let (e, dq, dkv, m) = (cfg.hidden, cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim, cfg.intermediate);
        let get = |name: &str, shape: &[usize]| -> Result<B::Tensor> {
            let want: Vec<Option<usize>> = shape.iter().map(|&s| Some(s)).collect();
            let t = w.get(&format!("{prefix}{name}"), &want)?;
            Ok(be.upload(&t.data, shape)?)
        };
        let embed = get("embed_tokens.weight", &[cfg.vocab, e])?;
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let p = format!("layers.{i}");
            let gate = w.get(&format!("{prefix}{p}.mlp.gate_proj.weight"), &[Some(m), Some(e)])?;
            let up = w.get(&format!("{prefix}{p}.mlp.up_proj.weight"), &[Some(m), Some(e)])?;
            let gate_up: Vec<f32> = gate.data.iter().chain(&up.data).copied().collect();
            layers.push(Layer {
                in_norm: get(&format!("{p}.input_layernorm.weight"), &[e])?,
                q: get(&format!("{p}.self_attn.q_proj.weight"), &[dq, e])?,
                k: get(&format!("{p}.self_attn.k_proj.weight"), &[dkv, e])?,
                v: get(&format!("{p}.self_attn.v_proj.weight"), &[dkv, e])?,
                o: get(&format!("{p}.self_attn.o_proj.weight"), &[e, dq])?,
                q_norm: get(&format!("{p}.self_attn.q_norm.weight"), &[cfg.head_dim])?,
                k_norm: get(&format!("{p}.self_attn.k_norm.weight"), &[cfg.head_dim])?,
                post_norm: get(&format!("{p}.post_attention_layernorm.weight"), &[e])?,
                gate_up: be.upload(&gate_up, &[2 * m, e])?,
                down: get(&format!("{p}.mlp.down_proj.weight"), &[e, m])?,
            });
        }
        let norm = get("norm.weight", &[e])?;
        Ok(TextEncoder { cfg, tokenizer, embed, layers, norm })
    }

    /// Tokenizes `prompts` in one padded batch and encodes it.
    pub fn encode_prompts(&self, be: &B, prompts: &[String]) -> Result<Encoded> {
        self.encode_prompts_at_least(be, prompts, 0)
    }

    /// [`Self::encode_prompts`] padded to at least `min_len` positions (the context length a
    /// model was trained with).
    pub fn encode_prompts_at_least(&self, be: &B, prompts: &[String], min_len: usize) -> Result<Encoded> {
        let tokens = self.tokenizer.batch_at_least(prompts, min_len)?;
        let context = self.encode_tokens(be, &tokens)?;
        Ok(Encoded { context, tokens, hidden: self.cfg.hidden })
    }

    /// The last hidden states [B, L, E] of a token batch; padded positions are encoded too.
    pub fn encode_tokens(&self, be: &B, t: &TokenBatch) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        let (b, l, e) = (t.batch, t.len, cfg.hidden);
        if b * l == 0 {
            return Ok(Vec::new());
        }
        if let Some(&id) = t.ids.iter().find(|&&id| id as usize >= cfg.vocab) {
            return Err(Error::new(format!("token id {id} is outside the text encoder's vocabulary of {}", cfg.vocab)));
        }
        let (cos, sin) = ops::rope_tables_1d::<f32>(cfg.head_dim, l, cfg.rope_theta);
        let half = cfg.head_dim / 2;
        let (cos, sin) = (be.upload(&cos, &[l, half])?, be.upload(&sin, &[l, half])?);
        let mask = be.upload(&t.mask, &[b, l])?;
        let heads = Heads { q: cfg.heads, kv: cfg.kv_heads };
        let mut x = be.reshape(be.gather_rows(&self.embed, &t.ids)?, &[b, l, e])?;
        for ly in &self.layers {
            let (h, _) = be.rmsnorm(&x, Some(&ly.in_norm), cfg.rms_eps)?;
            let qkv = be.linear_multi(&h, &[&ly.q, &ly.k, &ly.v], &[None, None, None])?;
            let [q, k, v]: [B::Tensor; 3] = qkv.try_into().map_err(|_| Error::new("linear_multi returned the wrong number of outputs"))?;
            let q = self.head_norm_rope(be, q, &ly.q_norm, &cos, &sin, cfg.heads, [b, l])?;
            let k = self.head_norm_rope(be, k, &ly.k_norm, &cos, &sin, cfg.kv_heads, [b, l])?;
            let a = be.attention_masked(&q, &k, &v, heads, true, Some(&mask))?;
            x = be.axpby(1.0, &x, 1.0, &be.linear(&a, &ly.o, None)?)?;
            let (h, _) = be.rmsnorm(&x, Some(&ly.post_norm), cfg.rms_eps)?;
            let act = be.swiglu(&be.linear(&h, &ly.gate_up, None)?)?;
            x = be.axpby(1.0, &x, 1.0, &be.linear(&act, &ly.down, None)?)?;
        }
        let (y, _) = be.rmsnorm(&x, Some(&self.norm), cfg.rms_eps)?;
        Ok(be.download(&y)?)
    }

    /// RMSNorm over each head's Dh values (with the layer's gain), then RoPE.
    #[allow(clippy::too_many_arguments)]
    fn head_norm_rope(&self, be: &B, x: B::Tensor, gain: &B::Tensor, cos: &B::Tensor, sin: &B::Tensor, nh: usize, [b, l]: [usize; 2]) -> Result<B::Tensor> {
        let dh = self.cfg.head_dim;
        let x = be.reshape(x, &[b * l * nh, dh])?;
        let (y, _) = be.rmsnorm(&x, Some(gain), self.cfg.rms_eps)?;
        let y = be.reshape(y, &[b, l, nh * dh])?;
        Ok(be.rope(&y, cos, sin, nh)?)
    }
}
