//! Prompts to token batches with Hugging Face's tokenizer (the `tokenizers` crate) and the
//! batch rules of the official `text_encoder.py`: truncation at [`MAX_TOKENS`], padding to the
//! longest prompt with the pad token of `tokenizer_config.json` (its eos token when it names
//! none) on the side it names (right when it names none), and a mask of 1 for tokens, 0 for
//! padding.

use crate::error::{Error, Result};
use std::path::Path;
use tokenizers::Tokenizer;

/// Tokens kept per prompt.
pub const MAX_TOKENS: usize = 256;

/// A tokenizer with its padding and truncation rules.
pub struct PromptTokenizer {
    tok: Tokenizer,
    pad_id: u32,
    pad_left: bool,
    truncate_left: bool,
}

/// A padded batch: `ids` and `mask` are [B, L] row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBatch {
    pub ids: Vec<u32>,
    pub mask: Vec<f32>,
    pub batch: usize,
    pub len: usize,
    /// Indices of the prompts cut to [`MAX_TOKENS`], with their full token counts.
    pub truncated: Vec<(usize, usize)>,
}

/// A token named in tokenizer_config.json: a string, or an object with `content`.
fn token_field(cfg: &serde_json::Value, field: &str) -> Option<String> {
    match cfg.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(String::from),
        _ => None,
    }
}

fn side(cfg: &serde_json::Value, field: &str, origin: &Path) -> Result<bool> {
    match cfg.get(field) {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::String(s)) if s == "right" => Ok(false),
        Some(serde_json::Value::String(s)) if s == "left" => Ok(true),
        Some(v) => Err(Error::new(format!("{}: field `{field}` is {v}, expected \"left\" or \"right\"", origin.display()))),
    }
}

impl PromptTokenizer {
    /// Reads `tokenizer.json` and `tokenizer_config.json` from a model directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let tj = dir.join("tokenizer.json");
        if !tj.is_file() {
            return Err(Error::new(format!("{}: no tokenizer.json in the text encoder directory", dir.display())));
        }
        let tok = Tokenizer::from_file(&tj).map_err(|e| Error::new(format!("{}: not a tokenizer ({e})", tj.display())))?;
        let tc = dir.join("tokenizer_config.json");
        let cfg: serde_json::Value = match std::fs::read_to_string(&tc) {
            Ok(s) => serde_json::from_str(&s).map_err(|e| Error::new(format!("{}: not JSON ({e})", tc.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(e) => return Err(Error::new(format!("{}: cannot read: {e}", tc.display()))),
        };
        let (pad_field, pad) = match token_field(&cfg, "pad_token") {
            Some(p) => ("pad_token", p),
            None => ("eos_token", token_field(&cfg, "eos_token").ok_or_else(|| Error::new(format!("{}: neither `pad_token` nor `eos_token` is set", tc.display())))?),
        };
        let pad_id = tok.token_to_id(&pad).ok_or_else(|| Error::new(format!("{}: field `{pad_field}` = {pad:?} is not a token of {}", tc.display(), tj.display())))?;
        Ok(PromptTokenizer { tok, pad_id, pad_left: side(&cfg, "padding_side", &tc)?, truncate_left: side(&cfg, "truncation_side", &tc)? })
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Token ids of one prompt, before truncation and padding.
    pub fn ids(&self, prompt: &str) -> Result<Vec<u32>> {
        let enc = self.tok.encode(prompt, true).map_err(|e| Error::new(format!("cannot tokenize prompt {prompt:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The padded batch of `prompts` (see the module docs).
    pub fn batch(&self, prompts: &[String]) -> Result<TokenBatch> {
        self.batch_at_least(prompts, 0)
    }

    /// [`Self::batch`] padded to at least `min_len` positions: a dataset's captions all at the
    /// length of its longest, so that batches of any of them share one context length.
    pub fn batch_at_least(&self, prompts: &[String], min_len: usize) -> Result<TokenBatch> {
        let mut rows = Vec::with_capacity(prompts.len());
        let mut truncated = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            let mut ids = self.ids(p)?;
            if ids.len() > MAX_TOKENS {
                truncated.push((i, ids.len()));
                ids = if self.truncate_left { ids.split_off(ids.len() - MAX_TOKENS) } else { ids[..MAX_TOKENS].to_vec() };
            }
            rows.push(ids);
        }
        // As in transformers, a batch of empty prompts only has length 0.
        let len = rows.iter().map(Vec::len).max().unwrap_or(0).max(min_len);
        let (mut ids, mut mask) = (Vec::with_capacity(rows.len() * len), Vec::with_capacity(rows.len() * len));
        for r in &rows {
            let pad = len - r.len();
            let (pids, pm) = (std::iter::repeat_n(self.pad_id, pad), std::iter::repeat_n(0.0f32, pad));
            let (tids, tm) = (r.iter().copied(), std::iter::repeat_n(1.0f32, r.len()));
            if self.pad_left {
                ids.extend(pids.chain(tids));
                mask.extend(pm.chain(tm));
            } else {
                ids.extend(tids.chain(pids));
                mask.extend(tm.chain(pm));
            }
        }
        Ok(TokenBatch { ids, mask, batch: rows.len(), len, truncated })
    }
}
