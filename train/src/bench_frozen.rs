//! `mvdit bench --frozen`: the frozen networks at the released sizes, from files in the
//! official layouts (random weights from `scripts/reference/make_frozen.py --full-size` serve):
//! decode one image's latent, encode one image, encode a batch of two prompts of N tokens.
//! One workload per process, so the JSON line's peak memory is that workload's.

use crate::bench::{peak_rss_mb, BenchOptions};
use crate::rng::Rng;
use mvdit_core::Backend;
use mvdit_model::{Autoencoder, Error, Result, TextEncoder, TokenBatch, WeightFile};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frozen {
    /// Decode one latent [1, 4z, S/f, S/f] to an S×S image.
    AeDecode,
    /// Encode one S×S image.
    AeEncode,
    /// Two prompts of `--prompt-tokens` tokens through the text encoder.
    TextEncode,
}

impl std::str::FromStr for Frozen {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        mvdit_core::parse_choice(s, &[("ae-decode", Frozen::AeDecode), ("ae-encode", Frozen::AeEncode), ("text-encode", Frozen::TextEncode)], "frozen workload").map_err(Error::new)
    }
}

/// What a workload reads and how large its input is.
pub struct FrozenInputs<'a> {
    pub vae: Option<&'a Path>,
    pub text_encoder: Option<&'a Path>,
    pub image_size: usize,
    pub prompt_tokens: usize,
}

/// Median seconds of `o.steps` calls after `o.warmup`.
fn time(o: &BenchOptions, mut f: impl FnMut() -> Result<()>) -> Result<(f64, Vec<f64>)> {
    for _ in 0..o.warmup {
        f()?;
    }
    let mut t = Vec::with_capacity(o.steps);
    for _ in 0..o.steps {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64());
    }
    let median = mvdit_core::stats::median(&mut t.clone()).ok_or_else(|| Error::new("no timed calls"))?;
    Ok((median, t))
}

pub fn bench_frozen<B: Backend>(be: &B, which: Frozen, inp: &FrozenInputs, o: &BenchOptions) -> Result<Value> {
    let mut rng = Rng::new(0);
    let load_start = Instant::now();
    let (median, all, load_s, shape) = match which {
        Frozen::AeDecode | Frozen::AeEncode => {
            let path = inp.vae.ok_or_else(|| Error::new("--frozen ae-decode|ae-encode needs --vae FILE"))?;
            let ae = Autoencoder::load(be, &WeightFile::open(path)?)?;
            let load_s = load_start.elapsed().as_secs_f64();
            let (s, f) = (inp.image_size, ae.cfg.factor());
            if s == 0 || s % f != 0 {
                return Err(Error::new(format!("--image-size {s} is not a positive multiple of the autoencoder's factor {f}")));
            }
            if which == Frozen::AeDecode {
                let d = [1, ae.cfg.latent_channels(), s / f, s / f];
                let z = rng.normals(d.iter().product());
                let (m, a) = time(o, || ae.decode(be, &z, d).map(drop))?;
                (m, a, load_s, d.to_vec())
            } else {
                let d = [1, ae.cfg.in_channels, s, s];
                let x: Vec<f32> = (0..d.iter().product()).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect();
                let (m, a) = time(o, || ae.encode(be, &x, d).map(drop))?;
                (m, a, load_s, d.to_vec())
            }
        }
        Frozen::TextEncode => {
            let dir = inp.text_encoder.ok_or_else(|| Error::new("--frozen text-encode needs --text-encoder DIR"))?;
            let enc = TextEncoder::load(be, dir)?;
            let load_s = load_start.elapsed().as_secs_f64();
            let (b, l) = (2, inp.prompt_tokens);
            if l == 0 {
                return Err(Error::new("--prompt-tokens must be at least 1"));
            }
            let ids = (0..b * l).map(|_| rng.below(enc.cfg.vocab) as u32).collect();
            let t = TokenBatch { ids, mask: vec![1.0; b * l], batch: b, len: l, truncated: Vec::new() };
            let (m, a) = time(o, || enc.encode_tokens(be, &t).map(drop))?;
            (m, a, load_s, vec![b, l])
        }
    };
    Ok(json!({
        "frozen": format!("{which:?}"),
        "backend": be.name(),
        "input": shape,
        "steps": o.steps,
        "s_median": median,
        "s_all": all,
        "load_s": load_s,
        "peak_rss_mb": peak_rss_mb(),
    }))
}
