//! A shard set written by `mvdit prepare`, read through memory maps: `shards.json` (the index),
//! `shard-NNNNN.safetensors` (`latent` [N, C, h, w] with `label` [N] or `context` [N, Lt, D]),
//! and for captions `empty.safetensors` (the empty prompt's `context` [1, D], the guidance
//! branch). Every shard is opened and checked against the index up front; then a sample is
//! read alone (its rows of the mapped file, decoded to f32, its pages dropped from the resident
//! set), so host memory does not grow with the dataset: the labels (4 bytes a sample), the
//! maps, and what a batch holds.

use crate::data::{Dataset, Text};
use mvdit_model::{Error, Result, WeightFile};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Samples held out of a shard set for the held-out loss, at most.
pub const MAX_EVAL: usize = 128;

/// What a shard set's samples are conditioned on.
#[derive(Clone, Debug, PartialEq)]
pub enum ShardKind {
    /// Class labels, with the class names in label order.
    Classes(Vec<String>),
    /// Caption contexts of `tokens` positions of `dim` values.
    Captions { tokens: usize, dim: usize },
}

/// The shards of one `mvdit prepare` output, memory-mapped.
pub struct ShardSet {
    pub dir: PathBuf,
    /// [C, h, w] of every latent.
    pub latent: [usize; 3],
    pub kind: ShardKind,
    /// The empty prompt's context [tokens, dim] (captions; empty for classes).
    pub empty: Vec<f32>,
    files: Vec<WeightFile>,
    counts: Vec<usize>,
    /// Each shard's labels (classes).
    labels: Vec<Vec<u32>>,
    /// FNV-1a of what [`Self::fingerprint`] covers.
    hash: u64,
    /// Each shard's file and its CRC-32 (index field `shards[k].crc32`; sets written before it
    /// have none).
    crcs: Vec<(PathBuf, Option<u32>)>,
}


/// 64-bit FNV-1a of `bytes`, continuing from `h`.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

fn usize_of(v: &Value) -> Option<usize> {
    v.as_u64().map(|n| n as usize)
}

impl ShardSet {
    /// Opens `dir/shards.json` and every shard it lists; a file or field that does not agree
    /// with the index is one error naming both.
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join("shards.json");
        let text = std::fs::read_to_string(&index_path).map_err(|e| Error::new(format!("{}: cannot read: {e} (write it with `mvdit prepare`)", index_path.display())))?;
        let at = |field: &str, msg: String| Error::new(format!("{} field `{field}`: {msg}", index_path.display()));
        let ix: Value = serde_json::from_str(&text).map_err(|e| at("(file)", format!("not JSON ({e})")))?;
        let shape = ix["latent_shape"].as_array().and_then(|a| a.iter().map(usize_of).collect::<Option<Vec<_>>>()).unwrap_or_default();
        let latent: [usize; 3] = match shape[..] {
            [c, h, w] if c > 0 && h > 0 && w > 0 => [c, h, w],
            _ => return Err(at("latent_shape", format!("{} is not [C, h, w]", ix["latent_shape"]))),
        };
        let list = ix["shards"].as_array().filter(|a| !a.is_empty()).ok_or_else(|| at("shards", "missing or empty".into()))?;
        let kind = match ix["kind"].as_str() {
            Some("classes") => {
                let names: Vec<String> = ix["class_names"].as_array().map(|a| a.iter().filter_map(|n| n.as_str().map(String::from)).collect()).unwrap_or_default();
                if names.is_empty() {
                    return Err(at("class_names", "missing or empty".into()));
                }
                ShardKind::Classes(names)
            }
            Some("captions") => {
                let dim = usize_of(&ix["text_encoder"]["hidden"]).filter(|&d| d > 0).ok_or_else(|| at("text_encoder.hidden", "missing".into()))?;
                let tokens = usize_of(&list[0]["context_tokens"]).filter(|&t| t > 0).ok_or_else(|| at("shards[0].context_tokens", "missing or zero".into()))?;
                ShardKind::Captions { tokens, dim }
            }
            other => return Err(at("kind", format!("{other:?} is neither \"classes\" nor \"captions\""))),
        };
        let (mut files, mut counts, mut labels, mut crcs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut seen = std::collections::HashSet::new();
        for (k, s) in list.iter().enumerate() {
            let field = |f: &str| format!("shards[{k}].{f}");
            let name = s["file"].as_str().filter(|n| !n.is_empty() && !n.contains(['/', '\\'])).ok_or_else(|| at(&field("file"), "missing or not a plain file name".into()))?;
            if !seen.insert(name) {
                return Err(at(&field("file"), format!("{name} is listed twice")));
            }
            let count = usize_of(&s["count"]).filter(|&c| c > 0).ok_or_else(|| at(&field("count"), "missing or zero".into()))?;
            let path = dir.join(name);
            let crc = match s.get("crc32") {
                None => None,
                Some(v) => Some(v.as_str().filter(|c| c.len() == 8).and_then(|c| u32::from_str_radix(c, 16).ok()).ok_or_else(|| at(&field("crc32"), format!("{v} is not 8 hex digits")))?),
            };
            crcs.push((path.clone(), crc));
            let w = WeightFile::open(&path).map_err(|e| e.context(format!("{} field `{}`", index_path.display(), field("file"))))?;
            let has = |t: &str, want: Vec<usize>| -> Result<()> {
                let got = w.shape(t)?;
                match got == want.as_slice() {
                    true => Ok(()),
                    false => Err(Error::new(format!("{}: tensor `{t}` has shape {got:?}, the index says {want:?}", path.display()))),
                }
            };
            has("latent", vec![count, latent[0], latent[1], latent[2]])?;
            match &kind {
                ShardKind::Classes(names) => {
                    let (_, v) = w.ints("label")?;
                    if v.len() != count {
                        return Err(Error::new(format!("{}: tensor `label` has {} values, the index says {count}", path.display(), v.len())));
                    }
                    if let Some(bad) = v.iter().find(|&&l| l < 0 || l as usize >= names.len()) {
                        return Err(Error::new(format!("{}: tensor `label` holds {bad}, not a class of {}", path.display(), names.len())));
                    }
                    labels.push(v.into_iter().map(|l| l as u32).collect());
                }
                ShardKind::Captions { tokens, dim } => {
                    let got = w.shape("context")?;
                    if got != [count, *tokens, *dim] {
                        return Err(Error::new(format!(
                            "{}: tensor `context` has shape {got:?}, expected [{count}, {tokens}, {dim}]: every shard of a set needs the same context length (rerun `mvdit prepare` into a new folder)",
                            path.display()
                        )));
                    }
                    labels.push(Vec::new());
                }
            }
            files.push(w);
            counts.push(count);
        }
        let empty = match &kind {
            ShardKind::Classes(_) => Vec::new(),
            ShardKind::Captions { tokens, dim } => {
                let name = ix["empty_prompt"].as_str().filter(|n| !n.is_empty() && !n.contains(['/', '\\'])).ok_or_else(|| at("empty_prompt", "missing or not a plain file name".into()))?;
                let field = format!("{} field `empty_prompt`", index_path.display());
                let row = WeightFile::open(&dir.join(name)).and_then(|w| w.get("context", &[Some(1), Some(*dim)])).map_err(|e| e.context(&field))?.data;
                row.repeat(*tokens)
            }
        };
        let identity = json!([ix["kind"], ix["latent_shape"], ix["shuffle_seed"], list.iter().map(|s| json!([s["file"], s["count"], s["context_tokens"]])).collect::<Vec<_>>()]);
        let hash = fnv1a(0xCBF2_9CE4_8422_2325, identity.to_string().as_bytes());
        Ok(ShardSet { dir: dir.to_path_buf(), latent, kind, empty, files, counts, labels, hash, crcs })
    }

    /// Reads every shard whole and checks it against its `crc32` in shards.json (off with
    /// [`mvdit_model::checksum::set_verify`]`(false)`): a flipped bit is an error naming the
    /// shard before training reads it.
    pub fn verify(&self) -> Result<()> {
        if !mvdit_model::checksum::verifying() {
            return Ok(());
        }
        for (path, want) in &self.crcs {
            let Some(want) = *want else { continue };
            let got = mvdit_model::checksum::of_file(path)?;
            if got != want {
                return Err(Error::new(format!(
                    "{}: checksum mismatch (shards.json says {want:08x}, the file is {got:08x}): the shard is corrupt; prepare the set again into a new folder",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// What identifies the set's contents for a resume: its sample and shard counts and a hash
    /// of the index's counts, file names, kind, shapes and shuffle seed.
    pub fn fingerprint(&self) -> String {
        format!("{} samples in {} shards, {:016x}", self.len(), self.counts.len(), self.hash)
    }

    /// Samples in the set.
    pub fn len(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Samples in each shard, in index order.
    pub fn counts(&self) -> &[usize] {
        &self.counts
    }

    /// Values per latent: C·h·w.
    pub fn sample_len(&self) -> usize {
        self.latent.iter().product()
    }

    /// The label of (shard, row) (0 for captions).
    pub fn label(&self, shard: usize, row: usize) -> u32 {
        self.labels[shard].get(row).copied().unwrap_or(0)
    }

    /// Appends the latent of (shard, row) to `x` and, for captions, its context to `context`.
    pub fn read(&self, shard: usize, row: usize, x: &mut Vec<f32>, context: Option<&mut Vec<f32>>) -> Result<()> {
        let w = &self.files[shard];
        w.read_rows("latent", row..row + 1, x)?;
        if let Some(c) = context {
            w.read_rows("context", row..row + 1, c)?;
        }
        Ok(())
    }

    /// Drops the mapped pages of `shards` from the resident set (see
    /// [`WeightFile::release_all`]): after a batch, what it read and what the kernel mapped
    /// around it.
    pub fn release(&self, shards: impl IntoIterator<Item = usize>) {
        for s in shards {
            self.files[s].release_all();
        }
    }

    /// The held-out samples: the last `eval_fraction` of the set (at most [`MAX_EVAL`]), read
    /// into host memory; returns them and the shard counts that training reads (the rest).
    pub fn split(&self, eval_fraction: f64) -> Result<(Vec<usize>, Dataset)> {
        let frac = if eval_fraction.is_nan() { 0.0 } else { eval_fraction.clamp(0.0, 1.0) };
        let total = self.len();
        let n_eval = ((total as f64 * frac).round() as usize).min(MAX_EVAL).min(total.saturating_sub(1));
        let mut counts = self.counts.clone();
        let (mut x, mut labels, mut ctx) = (Vec::new(), Vec::new(), Vec::new());
        let mut left = n_eval;
        for shard in (0..counts.len()).rev() {
            let take = left.min(counts[shard]);
            for row in counts[shard] - take..counts[shard] {
                let captions = matches!(self.kind, ShardKind::Captions { .. });
                self.read(shard, row, &mut x, captions.then_some(&mut ctx))?;
                labels.push(self.label(shard, row));
            }
            counts[shard] -= take;
            left -= take;
            if left == 0 {
                break;
            }
        }
        let [c, h, _] = self.latent;
        let (names, text) = match &self.kind {
            ShardKind::Classes(names) => (names.clone(), None),
            ShardKind::Captions { tokens, dim } => (vec!["caption".into()], Some(Text { contexts: ctx, tokens: *tokens, dim: *dim, empty: self.empty.clone() })),
        };
        let eval = Dataset::latents(c, h, x, labels, names, text).map_err(|e| Error::new(format!("{}: {e}", self.dir.display())))?;
        Ok((counts, eval))
    }
}
