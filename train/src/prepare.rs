//! `mvdit prepare`: an image folder to training shards. Each image is centre-cropped and resized
//! (as ADM/DiT do), encoded by the autoencoder to the DiT's latents, and, with captions, its
//! caption encoded by the text encoder. Shards are safetensors of `--shard-size` samples:
//! `latent` [N, C, h, w] (bf16, f16 or f32) and `label` [N] (int64, class sub-folders) or
//! `context` [N, L, D] + `mask` [N, L] (uint8; L the set's longest caption, so that training
//! batches mix shards; padding positions hold what the text encoder gives them, as the
//! release's DiT sees them). `shards.json`
//! indexes them with the encoders' identities; `empty.safetensors` holds the empty prompt's
//! embedding `context` [1, D] (an all-padding row encodes to the same vector at every position),
//! the guidance branch. The images are shuffled (`--seed`) before they are cut into shards, since
//! training shuffles only within a few shards at a time; `samples.jsonl` says where each sample
//! came from. Rerunning with the same seed skips the shards already written (each is written
//! atomically).

use crate::data::{has_image_extension, image_to_chw, list_dir, read_image};
use crate::observe::Progress;
use mvdit_core::dtype::{encode_le, Dtype};
use mvdit_core::Backend;
use mvdit_model::tensorfile::write_atomic;
use mvdit_model::{Autoencoder, Error, Result, TextEncoder, TokenBatch, WeightFile};
use safetensors::tensor::{Dtype as StDtype, TensorView};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Images per autoencoder call.
const AE_BATCH: usize = 4;
/// Captions per text-encoder call.
const TEXT_BATCH: usize = 16;

/// What `prepare` reads and writes (the command line's `mvdit prepare` flags).
pub struct PrepareOptions {
    pub images: PathBuf,
    pub vae: PathBuf,
    pub text_encoder: Option<PathBuf>,
    pub captions: Option<PathBuf>,
    pub size: usize,
    pub flip: bool,
    pub shard_size: usize,
    pub dtype: Dtype,
    /// Seed of the shuffle of the images over the shards.
    pub seed: u64,
    pub out: PathBuf,
}

/// One sample: its file, mirrored or not, and its label or caption.
struct Item {
    file: PathBuf,
    flip: bool,
    label: u32,
    caption: Option<String>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::new(e.to_string())
}

/// Class sub-folders (sorted), each image labelled by its folder's index.
fn class_items(dir: &Path) -> Result<(Vec<String>, Vec<Item>)> {
    let mut classes: Vec<(String, PathBuf)> = list_dir(dir).map_err(err)?.into_iter().filter(|(n, p)| !n.starts_with('.') && p.is_dir()).collect();
    classes.sort();
    if classes.is_empty() {
        return Err(Error::new(format!("{}: no class sub-folders (or give --captions FILE for a flat folder)", dir.display())));
    }
    let mut items = Vec::new();
    for (label, (name, path)) in classes.iter().enumerate() {
        let mut files: Vec<PathBuf> = list_dir(path).map_err(err)?.into_iter().filter(|(n, p)| !n.starts_with('.') && has_image_extension(n) && p.is_file()).map(|(_, p)| p).collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::new(format!("{}: class `{name}` holds no PNG or JPEG file", path.display())));
        }
        items.extend(files.into_iter().map(|file| Item { file, flip: false, label: label as u32, caption: None }));
    }
    Ok((classes.into_iter().map(|(n, _)| n).collect(), items))
}

/// `{"file": ..., "caption": ...}` per line, files relative to the image folder.
fn caption_items(dir: &Path, captions: &Path) -> Result<Vec<Item>> {
    let text = std::fs::read_to_string(captions).map_err(|e| Error::new(format!("{}: cannot read: {e}", captions.display())))?;
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |what: &str| Error::new(format!("{} line {}: {what}", captions.display(), i + 1));
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| at(&format!("not JSON ({e})")))?;
        let file = v.get("file").and_then(|f| f.as_str()).ok_or_else(|| at("field `file` missing or not a string"))?;
        let caption = v.get("caption").and_then(|f| f.as_str()).ok_or_else(|| at("field `caption` missing or not a string"))?;
        let path = dir.join(file);
        if file.split(['/', '\\']).any(|c| c == "..") || !path.is_file() {
            return Err(at(&format!("field `file`: {} is not an image in {}", file, dir.display())));
        }
        items.push(Item { file: path, flip: false, label: 0, caption: Some(caption.to_string()) });
    }
    if items.is_empty() {
        return Err(Error::new(format!("{}: no captions", captions.display())));
    }
    Ok(items)
}

fn st_dtype(d: Dtype) -> StDtype {
    match d {
        Dtype::F32 => StDtype::F32,
        Dtype::F16 => StDtype::F16,
        Dtype::Bf16 => StDtype::BF16,
    }
}

/// Serialises (name, dtype, shape, bytes) tensors and writes them atomically; returns the CRC-32
/// of the file's bytes.
fn write_tensors(path: &Path, tensors: &[(&str, StDtype, Vec<usize>, Vec<u8>)], metadata: Option<std::collections::HashMap<String, String>>) -> Result<u32> {
    let views = tensors
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.to_string(), v)).map_err(|e| Error::new(format!("tensor `{n}`: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, metadata).map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    write_atomic(path, &bytes)?;
    Ok(mvdit_model::checksum::of_bytes(&bytes))
}

/// Seeded Fisher–Yates shuffle.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = mvdit_core::rng::SplitMix64::new(seed ^ 0x5348_5546_464C_4531);
    for k in (1..items.len()).rev() {
        let j = rng.below(k as u64 + 1) as usize;
        items.swap(k, j);
    }
}

/// `path` opened when it is a finished shard of `count` samples (with contexts of `tokens`
/// positions, for captions).
fn finished_shard(path: &Path, count: usize, tokens: Option<usize>) -> Option<WeightFile> {
    let w = WeightFile::open(path).ok().filter(|w| w.shape("latent").ok().and_then(|s| s.first()) == Some(&count))?;
    match tokens {
        Some(l) => (w.shape("mask").ok()?.get(1) == Some(&l)).then_some(w),
        None => Some(w),
    }
}

/// Writes the shard folder `a.out` from the image folder `a.images`, reporting the images done
/// through `progress` (`start(0, images)`, `advance`, `message`, `finish`).
pub fn prepare<B: Backend>(be: &B, a: &PrepareOptions, progress: &mut dyn Progress) -> Result<()> {
    if a.shard_size == 0 {
        return Err(Error::new("--shard-size must be at least 1"));
    }
    if a.captions.is_some() && a.text_encoder.is_none() {
        return Err(Error::new("--captions needs --text-encoder DIR"));
    }
    let ae = Autoencoder::load(be, &WeightFile::open(&a.vae)?)?;
    let f = ae.cfg.factor();
    if a.size == 0 || a.size % f != 0 {
        return Err(Error::new(format!("--size {} is not a positive multiple of the autoencoder's factor {f}", a.size)));
    }
    if !a.images.is_dir() {
        return Err(Error::new(format!("{}: not a folder of images", a.images.display())));
    }
    let (class_names, mut base) = match &a.captions {
        Some(c) => (Vec::new(), caption_items(&a.images, c)?),
        None => class_items(&a.images)?,
    };
    // Training shuffles within a few shards at a time (`data.shuffle_shards`): the images are
    // spread over the shards first, so no shard holds one class folder. A mirrored copy stays
    // beside its image.
    shuffle(&mut base, a.seed);
    let enc = match (&a.captions, &a.text_encoder) {
        (Some(_), Some(dir)) => Some(TextEncoder::load(be, dir)?),
        _ => None,
    };
    let items: Vec<Item> = base
        .into_iter()
        .flat_map(|it| {
            let mirrored = a.flip.then(|| Item { file: it.file.clone(), flip: true, label: it.label, caption: it.caption.clone() });
            std::iter::once(it).chain(mirrored)
        })
        .collect();
    // Every caption at the length of the longest (truncated to the encoder's maximum).
    let context_tokens = match &enc {
        Some(enc) => {
            let mut longest = 0;
            for it in &items {
                longest = longest.max(enc.tokenizer.ids(it.caption.as_deref().unwrap_or_default())?.len().min(mvdit_model::MAX_TOKENS));
            }
            if longest == 0 {
                return Err(Error::new(format!("{}: every caption is empty", a.captions.as_ref().map_or(String::new(), |c| c.display().to_string()))));
            }
            longest
        }
        None => 0,
    };
    std::fs::create_dir_all(&a.out).map_err(|e| Error::new(format!("{}: cannot create: {e}", a.out.display())))?;
    let (c, h) = (ae.cfg.latent_channels(), a.size / f);
    progress.start(0, items.len() as u64);
    let mut position = 0u64;
    let mut shards = Vec::new();
    for (k, chunk) in items.chunks(a.shard_size).enumerate() {
        let name = format!("shard-{k:05}.safetensors");
        let path = a.out.join(&name);
        let seed_meta = std::collections::HashMap::from([("shuffle_seed".to_string(), a.seed.to_string())]);
        let done = finished_shard(&path, chunk.len(), enc.as_ref().map(|_| context_tokens));
        // A shard of another shuffle holds other images: written again.
        // The shard's CRC (shards.json): read back when written before, of the bytes written now.
        let crc = if done.is_some_and(|w| w.metadata().get("shuffle_seed") == seed_meta.get("shuffle_seed")) {
            progress.message(&format!("{name} already written"));
            mvdit_model::checksum::of_file(&path)?
        } else {
            let mut latents = Vec::with_capacity(chunk.len() * c * h * h);
            for group in chunk.chunks(AE_BATCH) {
                let mut px = Vec::with_capacity(group.len() * 3 * a.size * a.size);
                for it in group {
                    let img = read_image(&it.file).map_err(err)?;
                    let img = if it.flip { img.fliph() } else { img };
                    px.extend(image_to_chw(&img, a.size, 3));
                }
                latents.extend(ae.encode(be, &px, [group.len(), 3, a.size, a.size]).map_err(|e| e.context(group[0].file.display()))?);
                position += group.len() as u64;
                progress.advance(position);
            }
            let n = chunk.len();
            let mut tensors = vec![("latent", st_dtype(a.dtype), vec![n, c, h, h], encode_le(&latents, a.dtype))];
            match &enc {
                None => tensors.push(("label", StDtype::I64, vec![n], chunk.iter().flat_map(|it| (it.label as i64).to_le_bytes()).collect())),
                Some(enc) => {
                    let captions: Vec<String> = chunk.iter().map(|it| it.caption.clone().unwrap_or_default()).collect();
                    let t = enc.tokenizer.batch_at_least(&captions, context_tokens)?;
                    let (l, d) = (t.len, enc.cfg.hidden);
                    let mut ctx = Vec::with_capacity(n * l * d);
                    for rows in (0..n).step_by(TEXT_BATCH) {
                        let r = rows..(rows + TEXT_BATCH).min(n);
                        let part = TokenBatch { ids: t.ids[r.start * l..r.end * l].to_vec(), mask: t.mask[r.start * l..r.end * l].to_vec(), batch: r.len(), len: l, truncated: Vec::new() };
                        ctx.extend(enc.encode_tokens(be, &part)?);
                    }
                    tensors.push(("context", st_dtype(a.dtype), vec![n, l, d], encode_le(&ctx, a.dtype)));
                    tensors.push(("mask", StDtype::U8, vec![n, l], t.mask.iter().map(|&m| m as u8).collect()));
                }
            }
            write_tensors(&path, &tensors, Some(seed_meta))?
        };
        // The end of this shard, whether it was written now or before.
        position = (k * a.shard_size + chunk.len()) as u64;
        progress.advance(position);
        shards.push(json!({"file": name, "count": chunk.len(), "context_tokens": context_tokens, "crc32": format!("{crc:08x}")}));
    }
    progress.finish();
    let mut index = json!({
        "count": items.len(),
        "kind": if enc.is_some() { "captions" } else { "classes" },
        "latent_shape": [c, h, h],
        "dtype": format!("{:?}", a.dtype).to_lowercase(),
        "image_size": a.size,
        "flip": a.flip,
        "shards": shards,
        "autoencoder": {"file": a.vae.display().to_string(), "bytes": std::fs::metadata(&a.vae).map(|m| m.len()).unwrap_or(0), "config": format!("{:?}", ae.cfg)},
    });
    if let Some(enc) = &enc {
        let pad = TokenBatch { ids: vec![enc.tokenizer.pad_id()], mask: vec![0.0], batch: 1, len: 1, truncated: Vec::new() };
        let empty = enc.encode_tokens(be, &pad)?;
        write_tensors(&a.out.join("empty.safetensors"), &[("context", StDtype::F32, vec![1, enc.cfg.hidden], encode_le(&empty, Dtype::F32))], None)?;
        index["text_encoder"] = json!({"dir": a.text_encoder.as_ref().map(|d| d.display().to_string()), "hidden": enc.cfg.hidden, "layers": enc.cfg.layers});
        index["empty_prompt"] = json!("empty.safetensors");
    } else {
        index["class_names"] = json!(class_names);
    }
    // Where each sample came from, in sample order: one JSON line per sample.
    let sources: String = items.iter().map(|it| format!("{}\n", json!({"file": it.file.strip_prefix(&a.images).unwrap_or(&it.file).display().to_string(), "flip": it.flip}))).collect();
    write_atomic(&a.out.join("samples.jsonl"), sources.as_bytes())?;
    index["shuffle_seed"] = json!(a.seed);
    index["samples"] = json!("samples.jsonl");
    let text = serde_json::to_string_pretty(&index).map_err(err)?;
    write_atomic(&a.out.join("shards.json"), text.as_bytes())?;
    progress.message(&format!("wrote {} samples in {} shards to {}", items.len(), index["shards"].as_array().map_or(0, |s| s.len()), a.out.display()));
    Ok(())
}
