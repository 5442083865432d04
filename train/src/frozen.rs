//! `mvdit encode-text` and `mvdit vae encode|decode`: the frozen networks of the released
//! pipeline from the command line. Everything is computed before anything is written, so bad
//! input leaves no file behind.

use crate::data::{has_image_extension, image_to_chw, list_dir, read_image};
use crate::images::save_image;
use mvdit_core::Backend;
use mvdit_model::{Autoencoder, Error, HostTensor, Result, TensorFile, TextEncoder, WeightFile};
use std::path::{Path, PathBuf};

/// Images encoded per autoencoder call for `--images`.
const IMAGE_BATCH: usize = 4;

/// The prompts of `--prompt` (each) and `--prompts FILE` (one per line, empty lines kept as the
/// empty prompt only when given with --prompt "").
pub fn gather_prompts(prompts: &[String], file: Option<&Path>) -> Result<Vec<String>> {
    let mut all = prompts.to_vec();
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| Error::new(format!("{}: cannot read: {e}", f.display())))?;
        all.extend(text.lines().filter(|l| !l.trim().is_empty()).map(String::from));
    }
    if all.is_empty() {
        return Err(Error::new("no prompt: give --prompt TEXT (repeatable) or --prompts FILE"));
    }
    Ok(all)
}

/// `mvdit encode-text`: `context` [B, L, E] and `mask` [B, L] of the prompts, as one padded batch.
pub fn encode_text<B: Backend>(be: &B, encoder: &Path, prompts: &[String], out: &Path) -> Result<()> {
    let enc = TextEncoder::load(be, encoder)?;
    let e = enc.encode_prompts(be, prompts)?;
    for &(i, n) in &e.tokens.truncated {
        eprintln!("prompt {i} has {n} tokens: truncated to {}", mvdit_model::MAX_TOKENS);
    }
    let (b, l) = (e.tokens.batch, e.tokens.len);
    let mut f = TensorFile::default();
    f.insert("context", HostTensor::new(vec![b, l, e.hidden], e.context));
    f.insert("mask", HostTensor::new(vec![b, l], e.tokens.mask));
    f.metadata.insert("prompts".into(), serde_json::to_string(prompts).map_err(|e| Error::new(e.to_string()))?);
    f.metadata.insert("encoder".into(), encoder.display().to_string());
    f.write(out)?;
    eprintln!("wrote context [{b}, {l}, {}] and mask [{b}, {l}] to {}", enc.cfg.hidden, out.display());
    Ok(())
}

/// What `mvdit vae encode` reads: a tensor file with `image`, or a folder of pictures.
pub enum VaeInput {
    Tensors(PathBuf),
    Images { dir: PathBuf, size: usize },
}

fn dims4(t: &HostTensor, file: &Path, name: &str) -> Result<[usize; 4]> {
    match t.shape.as_slice() {
        [b, c, h, w] => Ok([*b, *c, *h, *w]),
        s => Err(Error::new(format!("{}: tensor `{name}` has shape {s:?}, expected [B, C, H, W]", file.display()))),
    }
}

/// Image files of `dir` (PNG/JPEG), sorted by name.
fn image_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    if !dir.is_dir() {
        return Err(Error::new(format!("{}: not a folder of images", dir.display())));
    }
    let mut files: Vec<_> = list_dir(dir)
        .map_err(|e| Error::new(e.to_string()))?
        .into_iter()
        .filter(|(n, p)| !n.starts_with('.') && has_image_extension(n) && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::new(format!("{}: no PNG or JPEG file", dir.display())));
    }
    Ok(files)
}

/// `mvdit vae encode`: `latent` [B, 4z, H/f, W/f] (normalised) of the images.
pub fn vae_encode<B: Backend>(be: &B, vae: &Path, input: &VaeInput, out: &Path) -> Result<()> {
    let ae = Autoencoder::load(be, &WeightFile::open(vae)?)?;
    let f = ae.cfg.factor();
    let mut file = TensorFile::default();
    let (latent, dims) = match input {
        VaeInput::Tensors(path) => {
            let t = TensorFile::read(path)?;
            let img = t.expect("image", &[None, None, None, None]).map_err(|e| e.context(path.display()))?;
            let d = dims4(img, path, "image")?;
            let z = ae.encode(be, &img.data, d).map_err(|e| e.context(format!("{}: tensor `image`", path.display())))?;
            (z, [d[0], ae.cfg.latent_channels(), d[2] / f, d[3] / f])
        }
        VaeInput::Images { dir, size } => {
            if *size == 0 || size % f != 0 {
                return Err(Error::new(format!("--size {size} is not a positive multiple of the autoencoder's factor {f}")));
            }
            let files = image_files(dir)?;
            let mut z = Vec::new();
            for chunk in files.chunks(IMAGE_BATCH) {
                let mut px = Vec::with_capacity(chunk.len() * 3 * size * size);
                for (_, p) in chunk {
                    px.extend(image_to_chw(&read_image(p).map_err(|e| Error::new(e.to_string()))?, *size, 3));
                }
                z.extend(ae.encode(be, &px, [chunk.len(), 3, *size, *size])?);
            }
            let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
            file.metadata.insert("files".into(), serde_json::to_string(&names).map_err(|e| Error::new(e.to_string()))?);
            (z, [files.len(), ae.cfg.latent_channels(), size / f, size / f])
        }
    };
    file.insert("latent", HostTensor::new(dims.to_vec(), latent));
    file.write(out)?;
    eprintln!("wrote latent {dims:?} to {}", out.display());
    Ok(())
}

/// Where `mvdit vae decode` writes: a tensor file with `image`, or one PNG per image.
pub enum VaeOutput {
    Tensors(PathBuf),
    Png(PathBuf),
}

/// `mvdit vae decode`: `image` [B, 3, H, W] (not clamped) of the latents of `inputs`.
pub fn vae_decode<B: Backend>(be: &B, vae: &Path, inputs: &Path, out: &VaeOutput) -> Result<()> {
    let ae = Autoencoder::load(be, &WeightFile::open(vae)?)?;
    let t = TensorFile::read(inputs)?;
    let lat = t.expect("latent", &[None, None, None, None]).map_err(|e| e.context(inputs.display()))?;
    let d = dims4(lat, inputs, "latent")?;
    let img = ae.decode(be, &lat.data, d).map_err(|e| e.context(format!("{}: tensor `latent`", inputs.display())))?;
    let f = ae.cfg.factor();
    let (c, h, w) = (ae.cfg.out_channels, d[2] * f, d[3] * f);
    match out {
        VaeOutput::Tensors(path) => {
            let mut file = TensorFile::default();
            file.insert("image", HostTensor::new(vec![d[0], c, h, w], img));
            file.write(path)?;
            eprintln!("wrote image [{}, {c}, {h}, {w}] to {}", d[0], path.display());
        }
        VaeOutput::Png(dir) => {
            if c != 3 && c != 1 {
                return Err(Error::new(format!("--png: the autoencoder gives {c} channels (PNG takes 1 or 3)")));
            }
            std::fs::create_dir_all(dir).map_err(|e| Error::new(format!("{}: cannot create: {e}", dir.display())))?;
            let per = c * h * w;
            for (i, im) in img.chunks_exact(per).enumerate() {
                let clamped: Vec<f32> = im.iter().map(|v| v.clamp(-1.0, 1.0)).collect();
                save_image(dir.join(format!("{i:04}.png")), &clamped, c, h, w).map_err(|e| Error::new(e.to_string()))?;
            }
            eprintln!("wrote {} PNG images ({w}x{h}) to {}", d[0], dir.display());
        }
    }
    Ok(())
}
