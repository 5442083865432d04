//! A DiT read from a weight file as it is needed: the whole model uploaded once when it fits
//! the memory a user allows, or streamed — the blocks cut into stages that fit a share of that
//! memory, each stage decoded from the memory-mapped file, uploaded, run and dropped in depth
//! order during every forward pass, the next stage decoded on a helper thread while one runs.
//! Host and device then hold about two stages' weights at a time (f32), and the file's pages
//! stay in the page cache, not in the process's own memory.
//!
//! With 16-bit weights (`Dtype::Bf16` / `F16`) a model that fits is kept whole in 16 bits on
//! the device, a [`PackedDit`].

use crate::checkpoint::{parse_config, STATE_PREFIXES};
use crate::dit::{Dit, StageIn, StageOut};
use crate::error::{Error, Result};
use crate::tape::Keep;
use crate::weights::WeightFile;
use crate::packed::{round_each, PackedDit, UNPACK_STAGE_BYTES};
use crate::step_cache::{velocity_in_stages, Piece, StepCache};
use mvdit_core::dtype::Dtype;
use mvdit_core::params::is_constant_ones_buffer;
use mvdit_core::{Backend, Dims, Layout, ModelConfig, Part};
use std::ops::Range;

/// How a [`WeightedDit`] holds its weights.
pub enum Residency<B: Backend> {
    /// Uploaded once, whole.
    Whole(Dit<B>),
    /// Stages of blocks uploaded in turn during each pass (f32, rounded first to the 16-bit
    /// dtype asked for when the file holds another).
    Streamed(Vec<Range<usize>>, Option<Dtype>),
    /// Every parameter in 16 bits on the device, unpacked stage by stage.
    Packed(PackedDit<B>),
}


/// A DiT over a weight file (a mvdit checkpoint in safetensors, or a converted release).
pub struct WeightedDit<B: Backend> {
    pub cfg: ModelConfig,
    weights: WeightFile,
    pub residency: Residency<B>,
}

/// Bytes of the f32 weights of parameters `range` of `layout`.
fn f32_bytes(layout: &Layout, range: Range<usize>) -> usize {
    4 * layout.numel_of(range)
}

/// Bytes of the f32 weights of the widest of `stages` (with the stem or head they carry).
pub fn widest_stage_bytes(layout: &Layout, stages: &[Range<usize>]) -> usize {
    stages.iter().map(|r| f32_bytes(layout, layout.stage_params(r.clone()))).max().unwrap_or(0)
}

/// The stages a 16-bit model is unpacked in under `max_memory`: at most [`UNPACK_STAGE_BYTES`]
/// and a quarter of the budget each.
pub fn unpack_stages(layout: &Layout, depth: usize, max_memory: usize) -> Vec<Range<usize>> {
    stages_within(layout, depth, UNPACK_STAGE_BYTES.min(max_memory / 4))
}

/// Stages of consecutive blocks whose f32 weights (with the stem or head they carry) each
/// stay within `budget` bytes; a block larger than the budget is a stage of its own.
pub fn stages_within(layout: &Layout, depth: usize, budget: usize) -> Vec<Range<usize>> {
    let mut stages = Vec::new();
    let mut start = 0;
    while start < depth {
        let mut end = start + 1;
        while end < depth && f32_bytes(layout, layout.stage_params(start..end + 1)) <= budget {
            end += 1;
        }
        stages.push(start..end);
        start = end;
    }
    stages
}

impl<B: Backend> WeightedDit<B> {
    /// Opens `weights` (config from `cfg` or the file's `config` metadata), checks every
    /// parameter's presence and shape, and keeps the whole model on the device in `dtype`
    /// (f32, or 16 bits unpacked per stage; `None`: the dtype the file stores every parameter
    /// in, else f32) when it fits `max_memory` bytes; otherwise streams it in f32 stages of at
    /// most a quarter of it.
    pub fn open(be: &B, weights: WeightFile, cfg: Option<ModelConfig>, max_memory: usize, dtype: Option<Dtype>) -> Result<Self> {
        let at = |e: Error| e.context(weights.origin());
        let cfg = match cfg {
            Some(c) => c,
            None => {
                let json = weights.metadata().get("config").ok_or_else(|| at(Error::new("no `config` in the metadata; pass --config C.json")))?;
                parse_config(json, "metadata key `config`").map_err(at)?
            }
        };
        cfg.validate()?;
        let layout = Layout::new(&cfg);
        for spec in &layout.specs {
            let got = weights.shape(&spec.name)?;
            if got != spec.shape.as_slice() {
                return Err(at(Error::new(format!("tensor `{}` has shape {got:?}, the config needs {:?}", spec.name, spec.shape))));
            }
        }
        if let Some(extra) = weights
            .names()
            .find(|n| layout.specs.iter().all(|s| s.name != *n) && !is_constant_ones_buffer(n, &cfg) && !STATE_PREFIXES.iter().any(|p| n.starts_with(p)))
        {
            return Err(at(Error::new(format!("unknown tensor `{extra}` for this config"))));
        }
        let dtype = dtype.unwrap_or_else(|| weights.common_dtype(layout.specs.iter().map(|s| s.name.as_str())).unwrap_or(Dtype::F32));
        let residency = match residence(&layout, cfg.depth, max_memory, dtype) {
            Plan::Whole => Residency::Whole(Dit::from_host(be, cfg.clone(), load_values(&weights, &layout, 0..cfg.depth)?)?),
            Plan::Packed(stages) => Residency::Packed(load_packed(be, &weights, cfg.clone(), dtype, stages)?),
            Plan::Streamed(stages) => {
                let stored = weights.common_dtype(layout.specs.iter().map(|s| s.name.as_str()));
                Residency::Streamed(stages, (dtype != Dtype::F32 && stored != Some(dtype)).then_some(dtype))
            }
        };
        Ok(WeightedDit { cfg, weights, residency })
    }

    /// The velocity [B, C, H, W] at x under context [B, Lt, Dc].
    pub fn velocity(&self, be: &B, x: &B::Tensor, context: B::Tensor) -> Result<B::Tensor> {
        let (stages, round) = match &self.residency {
            Residency::Whole(m) => return Ok(m.forward(be, x, context, Keep::Nothing)?.0),
            Residency::Packed(m) => return m.velocity(be, x, context),
            Residency::Streamed(s, round) => (s, *round),
        };
        let layout = Layout::new(&self.cfg);
        let xs = be.shape(x).to_vec();
        let lt = be.shape(&context).get(1).copied().unwrap_or(0);
        let mut input = Some(StageIn::Inputs { x, context });
        // Stage k+1's weights are decoded on a helper thread while stage k runs (reading and
        // decoding overlap the compute; the upload stays on this thread).
        std::thread::scope(|scope| {
            let (weights, layout) = (&self.weights, &layout);
            let fetch = |r: Range<usize>| scope.spawn(move || load_params(weights, layout, layout.stage_params(r), round));
            let mut next = stages.first().map(|r| fetch(r.clone()));
            for (k, r) in stages.iter().enumerate() {
                let values =
                    next.take().ok_or_else(|| Error::new("internal: no prefetch"))?.join().map_err(|_| Error::new("a weight-reading thread panicked"))??;
                next = stages.get(k + 1).map(|r| fetch(r.clone()));
                let stage = Dit::stage_from_host(be, self.cfg.clone(), r.clone(), values)?;
                let inp = input.take().ok_or_else(|| Error::new("internal: a streamed stage without input"))?;
                match stage.stage_forward(be, inp, Keep::Nothing, None)?.0 {
                    StageOut::Tokens(t) => input = Some(StageIn::Tokens { t, dims: Dims::new(&self.cfg, xs[0], xs[2], xs[3], lt)? }),
                    StageOut::Velocity(v) => return Ok(v),
                }
            }
            Err(Error::new("internal: the last streamed stage handed on tokens"))
        })
    }

    /// [`Self::velocity`] reusing updates from `cache` ([`StepCache`]): a block's when the model
    /// is held whole, a stage's when it is streamed (a reused stage is not read from the file,
    /// unless it was read ahead on the guess that it would be computed) or held in 16 bits (not
    /// unpacked).
    pub fn velocity_cached(&self, be: &B, x: &B::Tensor, context: B::Tensor, cache: &mut StepCache<B::Tensor>) -> Result<B::Tensor> {
        let (stages, round) = match &self.residency {
            Residency::Whole(m) => return m.velocity_cached(be, x, context, cache),
            Residency::Packed(m) => return velocity_in_stages(be, &self.cfg, &m.stages, x, context, cache, |piece, _| m.part(be, piece.part(&m.cfg, &m.stages))),
            Residency::Streamed(s, round) => (s, *round),
        };
        let layout = Layout::new(&self.cfg);
        let (weights, layout, cfg) = (&self.weights, &layout, &self.cfg);
        let values_of = move |p: &Part| load_params(weights, layout, layout.part_params(p), round);
        // The stage expected next (one computed at the previous call) is read on a helper thread
        // while one runs; a read-ahead stage that ends up reused was read for nothing and is
        // dropped.
        std::thread::scope(|scope| {
            let mut ahead: Option<(usize, std::thread::ScopedJoinHandle<'_, Result<Vec<Vec<f32>>>>)> = None;
            velocity_in_stages(be, cfg, stages, x, context, cache, |piece, next| {
                let part = piece.part(cfg, stages);
                let values = match (&piece, ahead.take()) {
                    (Piece::Stage(k), Some((j, read))) if j == *k => read.join().map_err(|_| Error::new("a weight-reading thread panicked"))??,
                    (_, kept) => {
                        ahead = kept.filter(|(j, _)| matches!(piece, Piece::Stage(k) if *j > k));
                        values_of(&part)?
                    }
                };
                if let (None, Some(n)) = (&ahead, next) {
                    let p = Piece::Stage(n).part(cfg, stages);
                    ahead = Some((n, scope.spawn(move || values_of(&p))));
                }
                Dit::part_from_host(be, cfg.clone(), part, values)
            })
        })
    }

    /// How the weights are held, in words: for the user.
    pub fn describe(&self) -> String {
        let layout = Layout::new(&self.cfg);
        let numel = layout.numel_of(0..layout.specs.len());
        match &self.residency {
            Residency::Whole(_) => format!("whole in f32 ({})", mb(4 * numel)),
            Residency::Packed(m) => {
                format!("whole in {} ({}), unpacked to f32 in {} stages per pass", dtype_name(m.dtype), mb(m.dtype.size() * numel), m.stages.len())
            }
            Residency::Streamed(s, round) => {
                let how = round.map_or(String::new(), |d| format!(", rounded to {}", dtype_name(d)));
                format!("streamed from the file in {} f32 stages per pass{how}", s.len())
            }
        }
    }

    /// Stages of a streamed model (None when whole, in f32 or 16 bits).
    pub fn stages(&self) -> Option<&[Range<usize>]> {
        match &self.residency {
            Residency::Whole(_) | Residency::Packed(_) => None,
            Residency::Streamed(s, _) => Some(s),
        }
    }
}

/// Bytes in MB with three significant digits at least (0.262 MB, 27300 MB).
pub fn mb(bytes: usize) -> String {
    let m = bytes as f64 / 1e6;
    if m >= 100.0 {
        format!("{m:.0} MB")
    } else {
        format!("{m:.3} MB")
    }
}

/// `f32`, `f16`, `bf16`.
pub fn dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::F32 => "f32",
        Dtype::F16 => "f16",
        Dtype::Bf16 => "bf16",
    }
}

/// Where a model's weights live: decided by [`residence`].
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Whole, in f32.
    Whole,
    /// Whole, in 16 bits, unpacked in these stages.
    Packed(Vec<Range<usize>>),
    /// Streamed from the file in these f32 stages.
    Streamed(Vec<Range<usize>>),
}

/// How a depth-`depth` model of `layout` held in `dtype` fits `max_memory` bytes: whole when
/// its weights in `dtype` (plus, for 16 bits, one unpacked f32 stage) fit, else streamed in
/// stages of at most a quarter of the budget.
pub fn residence(layout: &Layout, depth: usize, max_memory: usize, dtype: Dtype) -> Plan {
    let numel = layout.numel_of(0..layout.specs.len());
    if dtype == Dtype::F32 {
        return match 4 * numel <= max_memory {
            true => Plan::Whole,
            false => Plan::Streamed(stages_within(layout, depth, max_memory / 4)),
        };
    }
    let stages = unpack_stages(layout, depth, max_memory);
    match dtype.size() * numel + widest_stage_bytes(layout, &stages) <= max_memory {
        true => Plan::Packed(stages),
        false => Plan::Streamed(stages_within(layout, depth, max_memory / 4)),
    }
}

/// Every parameter of `cfg` decoded from the file one at a time, rounded to `dtype` (16-bit;
/// exact when the file holds that dtype) and kept on the device.
pub fn load_packed<B: Backend>(be: &B, w: &WeightFile, cfg: ModelConfig, dtype: Dtype, stages: Vec<Range<usize>>) -> Result<PackedDit<B>> {
    let layout = Layout::new(&cfg);
    PackedDit::build(be, cfg, dtype, stages, w.origin(), |i| {
        let s = &layout.specs[i];
        let shape: Vec<Option<usize>> = s.shape.iter().map(|&d| Some(d)).collect();
        Ok(w.get(&s.name, &shape)?.data)
    })
}

/// The f32 values of parameters `params` (layout indices) from the file, each checked against
/// its layout shape and rounded to 16-bit `round` when given (as a model held in it).
pub fn load_params(w: &WeightFile, layout: &Layout, params: Range<usize>, round: Option<Dtype>) -> Result<Vec<Vec<f32>>> {
    let specs = &layout.specs[params];
    let mut values = specs
        .iter()
        .map(|s| {
            let shape: Vec<Option<usize>> = s.shape.iter().map(|&d| Some(d)).collect();
            Ok(w.get(&s.name, &shape)?.data)
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(dtype) = round {
        round_each(specs, &mut values, dtype, w.origin())?;
    }
    Ok(values)
}

/// The f32 values of the parameters of stage `blocks`, in layout order, from the file, each
/// checked against its layout shape.
pub fn load_values(w: &WeightFile, layout: &Layout, blocks: Range<usize>) -> Result<Vec<Vec<f32>>> {
    load_params(w, layout, layout.stage_params(blocks), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout of a 10-block model of width 32.
    fn ten_blocks() -> Layout {
        let cfg: ModelConfig = serde_json::from_str(
            r#"{"in_channels":4,"patch_size":1,"hidden_size":32,"depth":10,"num_heads":2,
                "mlp_hidden_dim":64,"qkv_bias":false,"context_dim":32,"rope_base":10000}"#,
        )
        .unwrap();
        Layout::new(&cfg)
    }

    #[test]
    fn megabytes_keep_small_sizes_readable() {
        assert_eq!(mb(262_144), "0.262 MB");
        assert_eq!(mb(27_300_000_000), "27300 MB");
    }

    #[test]
    fn sixteen_bits_stay_whole_while_they_and_one_stage_fit() {
        let layout = ten_blocks();
        let all = 4 * layout.numel_of(0..layout.specs.len());
        assert_eq!(residence(&layout, 10, all, Dtype::F32), Plan::Whole);
        assert!(matches!(residence(&layout, 10, all - 1, Dtype::F32), Plan::Streamed(_)));
        // Half the f32 bytes plus the widest unpacked stage (a quarter of the budget at most).
        match residence(&layout, 10, all * 3 / 4, Dtype::Bf16) {
            Plan::Packed(stages) => assert!(stages.len() > 1 && stages.last().unwrap().end == 10, "{stages:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(residence(&layout, 10, usize::MAX, Dtype::F16), Plan::Packed(vec![0..10]));
        assert!(matches!(residence(&layout, 10, all / 2, Dtype::Bf16), Plan::Streamed(_)));
    }

    #[test]
    fn stages_cover_every_block_once_within_the_budget() {
        let layout = ten_blocks();
        let block = f32_bytes(&layout, layout.stage_params(3..4));
        for budget in [0, block, 3 * block + block / 2, usize::MAX] {
            let stages = stages_within(&layout, 10, budget);
            assert_eq!(stages.first().map(|r| r.start), Some(0));
            assert!(stages.windows(2).all(|w| w[0].end == w[1].start), "{stages:?}");
            assert_eq!(stages.last().map(|r| r.end), Some(10));
            for r in &stages {
                assert!(r.len() == 1 || f32_bytes(&layout, layout.stage_params(r.clone())) <= budget, "{r:?} over {budget}");
            }
        }
        assert_eq!(stages_within(&layout, 10, usize::MAX), [0..10]);
        assert_eq!(stages_within(&layout, 10, 0).len(), 10);
    }
}
