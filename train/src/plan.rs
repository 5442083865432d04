//! `mvdit plan`: what a configuration costs before anything is allocated — exact parameter count,
//! optimiser, gradient and activation memory (with and without block recompute), FLOPs per step,
//! and the fewest devices of a given memory that hold it with the depth (pipeline) split.
//!
//! Every count comes from the model's own sources: parameters from [`Layout`], activations from
//! [`mvdit_model::tape_elems`] (the list of what a training forward keeps, tested against a real
//! tape), FLOPs from [`Workload`] (what `mvdit bench` reports). All tensors are f32.

use crate::config::{ActivationBudget, Recompute, TrainConfig, Workload};
use crate::depth_split::even_split;
use mvdit_core::{Dims, Layout, ModelConfig};
use mvdit_model::{block_activation_elems, tape_elems, Error, Keep, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;

/// f32.
const BYTES: u64 = 4;

/// The model and one training batch's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanInput {
    pub model: ModelConfig,
    pub image_size: usize,
    pub context_tokens: usize,
    /// Samples per training step (per device for the memory figures).
    pub batch: usize,
    /// The trainer's block-recompute rule and budget (config fields `recompute`,
    /// `activation_budget_mb`; a workload plans the defaults, as `mvdit bench` runs it).
    pub recompute: Recompute,
    pub activation_budget_mb: ActivationBudget,
    /// The memory of one device (`mvdit plan --device-memory`), on which an "auto" budget
    /// is resolved as the trainer resolves it on its device.
    pub memory: Option<usize>,
}

impl PlanInput {
    /// Reads a training config (TOML or JSON, with a `model` table) or a benchmark workload
    /// (`benches/*.json`: model fields plus `image_size` and `context_tokens`). `batch` overrides
    /// the training config's `batch_size`; a workload without `--batch` plans batch 16.
    pub fn read(path: &Path, batch: Option<usize>, memory: Option<usize>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::new(format!("{}: cannot read: {e}", path.display())))?;
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        let has_model = if is_toml {
            text.parse::<toml::Table>().map(|t| t.contains_key("model")).unwrap_or(true)
        } else {
            serde_json::from_str::<Value>(&text).map(|v| v.get("model").is_some()).unwrap_or(true)
        };
        let input = if has_model {
            let cfg = TrainConfig::read(path)?;
            PlanInput {
                model: cfg.model,
                image_size: cfg.data.image_size,
                context_tokens: cfg.context_tokens,
                batch: batch.unwrap_or(cfg.batch_size),
                recompute: cfg.recompute,
                activation_budget_mb: cfg.activation_budget_mb,
                memory,
            }
        } else {
            let w = Workload::read(path)?;
            PlanInput {
                model: w.model,
                image_size: w.image_size,
                context_tokens: w.context_tokens,
                batch: batch.unwrap_or(16),
                recompute: Recompute::default(),
                activation_budget_mb: ActivationBudget::Auto,
                memory,
            }
        };
        input.dims().map_err(|e| e.context(path.display()))?;
        Ok(input)
    }

    fn dims(&self) -> Result<Dims> {
        if self.context_tokens == 0 {
            return Err(Error::new("config field `context_tokens`: must be at least 1"));
        }
        Ok(Dims::new(&self.model, self.batch, self.image_size, self.image_size, self.context_tokens)?)
    }
}

/// Memory of one depth stage (or of the whole model when there is one).
#[derive(Clone, Debug, PartialEq)]
pub struct StageMemory {
    pub blocks: Range<usize>,
    pub params: u64,
    /// Parameters, gradients, AdamW m and v, EMA weights: 5 f32 per parameter.
    pub state_bytes: u64,
    pub activation_bytes: u64,
}

impl StageMemory {
    pub fn total(&self) -> u64 {
        self.state_bytes + self.activation_bytes
    }
}

/// The plan of one configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub input: PlanInput,
    pub params: u64,
    pub param_bytes: u64,
    pub grad_bytes: u64,
    /// AdamW's two moments.
    pub optim_bytes: u64,
    /// The trainer's EMA copy of the weights.
    pub ema_bytes: u64,
    /// Tape of a training forward keeping every block activation.
    pub activations_all: u64,
    /// Tape with block recompute (block inputs only) plus one block's activations rebuilt
    /// during its backward.
    pub activations_recompute: u64,
    /// What the trainer keeps under the config's recompute rule, and that tape (plus one
    /// block's activations rebuilt in backward when any block is recomputed).
    pub trainer_keep: Keep,
    pub activations_trainer: u64,
    /// The activation budget that rule used (MiB; "auto" resolved on `input.memory`).
    pub budget_mib: usize,
    /// Forward FLOPs of one step (matmuls and attention).
    pub forward_flops: f64,
    /// Forward + backward (= 3 × forward).
    pub step_flops: f64,
    /// With block recompute every block runs forward twice.
    pub step_flops_recompute: f64,
}

impl Plan {
    pub fn new(input: PlanInput) -> Result<Self> {
        let d = input.dims()?;
        let cfg = &input.model;
        let layout = Layout::new(cfg);
        let params = layout.numel() as u64;
        let all = 0..cfg.depth;
        let activations_all = tape_elems(cfg, &d, all.clone(), Keep::All) as u64 * BYTES;
        let activations_recompute = (tape_elems(cfg, &d, all.clone(), Keep::BlockInputs) + block_activation_elems(&d)) as u64 * BYTES;
        let budget_mib = input.activation_budget_mb.mib(input.memory, layout.numel());
        let trainer_keep = input.recompute.keep(cfg.depth, &d, budget_mib);
        let rebuilt = if trainer_keep == Keep::All { 0 } else { block_activation_elems(&d) };
        let activations_trainer = (tape_elems(cfg, &d, all, trainer_keep) + rebuilt) as u64 * BYTES;
        let w = Workload { model: cfg.clone(), image_size: input.image_size, context_tokens: input.context_tokens };
        let b = input.batch as f64;
        let forward_flops = w.forward_flops_per_sample() * b;
        let step_flops = 3.0 * forward_flops;
        let step_flops_recompute = step_flops + cfg.depth as f64 * w.block_flops_per_sample() * b;
        Ok(Plan {
            params,
            param_bytes: params * BYTES,
            grad_bytes: params * BYTES,
            optim_bytes: 2 * params * BYTES,
            ema_bytes: params * BYTES,
            activations_all,
            activations_recompute,
            trainer_keep,
            activations_trainer,
            budget_mib,
            forward_flops,
            step_flops,
            step_flops_recompute,
            input,
        })
    }

    /// Parameters, gradients, moments and EMA.
    pub fn state_bytes(&self) -> u64 {
        self.param_bytes + self.grad_bytes + self.optim_bytes + self.ema_bytes
    }

    /// Memory of each stage when the blocks are split evenly over `n` devices (stage 0 also
    /// holds the stem, the last the head). The whole batch's activations stay on each stage
    /// between its forward and backward (GPipe schedule: every micro-batch's tape is alive at the
    /// turn), so micro-batching does not change these figures.
    pub fn stages(&self, n: usize, recompute: bool) -> Result<Vec<StageMemory>> {
        let d = self.input.dims()?;
        let cfg = &self.input.model;
        let layout = Layout::new(cfg);
        let keep = if recompute { Keep::BlockInputs } else { Keep::All };
        Ok(even_split(cfg.depth, n)
            .into_iter()
            .map(|blocks| {
                let params = layout.numel_of(layout.stage_params(blocks.clone())) as u64;
                let mut act = tape_elems(cfg, &d, blocks.clone(), keep);
                if recompute {
                    act += block_activation_elems(&d);
                }
                StageMemory { blocks, params, state_bytes: 5 * params * BYTES, activation_bytes: act as u64 * BYTES }
            })
            .collect())
    }

    /// The fewest devices of `device_bytes` each that hold the model with the depth split, with
    /// their stages; None when even one block per device does not fit.
    pub fn fewest_devices(&self, device_bytes: u64, recompute: bool) -> Result<Option<(usize, Vec<StageMemory>)>> {
        let depth = self.input.model.depth;
        // Memory per device only falls as devices are added: bisect on n.
        let fits = |n: usize| -> Result<bool> { Ok(self.stages(n, recompute)?.iter().all(|s| s.total() <= device_bytes)) };
        if !fits(depth)? {
            return Ok(None);
        }
        let (mut lo, mut hi) = (1, depth);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if fits(mid)? {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(Some((lo, self.stages(lo, recompute)?)))
    }

    /// The human-readable plan.
    pub fn render(&self, device_bytes: u64) -> Result<String> {
        let c = &self.input.model;
        let d = self.input.dims()?;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "model: depth {}, hidden {}, {} heads, MLP {}, patch {}, {} channels, {} residual; {}x{} input, {} + {} tokens, batch {}",
            c.depth, c.hidden_size, c.num_heads, c.mlp_hidden_dim, c.patch_size, c.in_channels, c.residual, self.input.image_size, self.input.image_size, d.li, d.lt, d.b
        );
        let _ = writeln!(o, "parameters:          {} ({})", digits(self.params), readable_count(self.params));
        let row = |o: &mut String, name: &str, bytes: u64, note: &str| {
            let _ = writeln!(o, "{}", format!("{name:<21}{:>10}  {note}", readable_bytes(bytes)).trim_end());
        };
        let _ = writeln!(o, "memory (f32):");
        row(&mut o, "  weights", self.param_bytes, "");
        row(&mut o, "  gradients", self.grad_bytes, "");
        row(&mut o, "  AdamW moments", self.optim_bytes, "m and v");
        row(&mut o, "  EMA weights", self.ema_bytes, "");
        row(&mut o, "  training state", self.state_bytes(), "sum of the above");
        row(&mut o, "  activations", self.activations_all, "every block activation kept");
        row(&mut o, "  with recompute", self.activations_recompute, "block inputs + one block rebuilt in backward");
        let rule = format!("recompute = {}", serde_json::to_string(&self.input.recompute).unwrap_or_default());
        let kept = match self.trainer_keep {
            Keep::Tail(n) => format!("the trainer's rule: last {n} of {} blocks kept within {} MiB{}", c.depth, self.budget_mib, self.budget_source()),
            Keep::BlockInputs => "the trainer's rule: every block recomputed".to_string(),
            _ if self.input.recompute == Recompute::Auto => format!("the trainer's rule: every block kept within {} MiB{}", self.budget_mib, self.budget_source()),
            _ => "the trainer's rule: every block activation kept".to_string(),
        };
        row(&mut o, &format!("  {rule}"), self.activations_trainer, &kept);
        let _ = writeln!(o, "FLOPs per step:      {} forward, {} training step ({} with block recompute)", readable_flops(self.forward_flops), readable_flops(self.step_flops), readable_flops(self.step_flops_recompute));
        let (whole, streamed, stages) = self.sampling(device_bytes)?;
        let _ = writeln!(o, "sampling (f32 compute, batch {} doubled by guidance):", d.b);
        row(&mut o, "  whole model", whole, "weights + one block's working set");
        row(&mut o, "  whole, 16-bit", self.sampling_16bit(device_bytes)?, "bf16/f16 weights + one unpacked stage + working set (--weights)");
        let note = format!("{stages} stages of at most a quarter of {} streamed per pass (--max-memory)", readable_bytes(device_bytes));
        row(&mut o, "  streamed", streamed, &note);
        let _ = writeln!(o, "depth split over devices of {} (f32 state + activations per device):", readable_bytes(device_bytes));
        for (recompute, label) in [(false, "without recompute"), (true, "with block recompute")] {
            match self.fewest_devices(device_bytes, recompute)? {
                Some((n, stages)) => {
                    let worst = stages.iter().max_by_key(|s| s.total()).expect("at least one stage");
                    let _ = writeln!(
                        o,
                        "  {label:<21}{n} device{} (largest stage: blocks {}..{}, {} = {} state + {} activations)",
                        if n == 1 { "" } else { "s" },
                        worst.blocks.start,
                        worst.blocks.end,
                        readable_bytes(worst.total()),
                        readable_bytes(worst.state_bytes),
                        readable_bytes(worst.activation_bytes)
                    );
                }
                None => {
                    let _ = writeln!(o, "  {label:<21}does not fit: one block per device already exceeds {} (lower --batch)", readable_bytes(device_bytes));
                }
            }
        }
        Ok(o)
    }

    /// The plan as one JSON object (bytes and FLOPs as numbers).
    /// Sampling memory with guidance (the batch doubled): (whole model: weights + one block's
    /// working set, streamed: its largest stage of at most `device_bytes`/4 of weights + the
    /// working set, stages) — the rule of `mvdit sample --max-memory` (`mvdit_model::streamed`).
    pub fn sampling(&self, device_bytes: u64) -> Result<(u64, u64, usize)> {
        let (working, layout) = self.sampling_parts()?;
        let stages = mvdit_model::streamed::stages_within(&layout, self.input.model.depth, (device_bytes / 4) as usize);
        let largest = mvdit_model::streamed::widest_stage_bytes(&layout, &stages) as u64;
        Ok((self.param_bytes + working, largest + working, stages.len()))
    }

    /// Sampling with the weights held whole in 16 bits (`sample --weights bf16|f16`): 2 bytes a
    /// weight, one stage unpacked to f32 at a time, and one block's working set.
    pub fn sampling_16bit(&self, device_bytes: u64) -> Result<u64> {
        let (working, layout) = self.sampling_parts()?;
        let stages = mvdit_model::streamed::unpack_stages(&layout, self.input.model.depth, device_bytes as usize);
        Ok(self.params * 2 + mvdit_model::streamed::widest_stage_bytes(&layout, &stages) as u64 + working)
    }

    /// One guided block's working set in bytes, and the layout.
    fn sampling_parts(&self) -> Result<(u64, Layout)> {
        let c = &self.input.model;
        let d = self.input.dims()?;
        let d2 = Dims::new(c, 2 * d.b, self.input.image_size, self.input.image_size, d.lt).map_err(|e| Error::new(e.to_string()))?;
        Ok((block_activation_elems(&d2) as u64 * BYTES, Layout::new(c)))
    }

    pub fn to_json(&self, device_bytes: u64) -> Result<Value> {
        let devices = |r| self.fewest_devices(device_bytes, r).map(|o| o.map(|(n, _)| n));
        let (sample_whole, sample_streamed, sample_stages) = self.sampling(device_bytes)?;
        Ok(json!({
            "sampling_bytes": sample_whole,
            "sampling_bytes_streamed": sample_streamed,
            "sampling_stages": sample_stages,
            "sampling_bytes_16bit": self.sampling_16bit(device_bytes)?,
            "params": self.params,
            "param_bytes": self.param_bytes,
            "grad_bytes": self.grad_bytes,
            "optim_bytes": self.optim_bytes,
            "ema_bytes": self.ema_bytes,
            "state_bytes": self.state_bytes(),
            "activation_bytes": self.activations_all,
            "activation_bytes_recompute": self.activations_recompute,
            "recompute": self.input.recompute,
            "kept_blocks": self.trainer_keep.kept_blocks(self.input.model.depth),
            "activation_budget_mib": self.budget_mib,
            "activation_budget": self.input.activation_budget_mb,
            "activation_bytes_trainer": self.activations_trainer,
            "forward_flops": self.forward_flops,
            "step_flops": self.step_flops,
            "step_flops_recompute": self.step_flops_recompute,
            "batch": self.input.batch,
            "device_bytes": device_bytes,
            "devices": devices(false)?,
            "devices_recompute": devices(true)?,
        }))
    }
}

impl Plan {
    /// Where the trainer's budget came from, in words.
    fn budget_source(&self) -> String {
        match (self.input.activation_budget_mb, self.input.memory) {
            (ActivationBudget::Auto, Some(m)) => format!(" (auto: half of {} after the training state)", readable_bytes(m as u64)),
            (ActivationBudget::Auto, None) => " (auto, memory unknown)".to_string(),
            _ => String::new(),
        }
    }
}

/// 13635584 → "13,635,584".
pub fn digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn scaled(v: f64, units: &[&str], base: f64) -> String {
    let mut v = v;
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0}{}", units[0])
    } else {
        format!("{v:.1}{}", units[i])
    }
}

/// 13.6 B, 268.5 M, 950.
pub fn readable_count(n: u64) -> String {
    scaled(n as f64, &["", " K", " M", " B", " T"], 1000.0)
}

/// Decimal units: 54.5 GB.
pub fn readable_bytes(n: u64) -> String {
    scaled(n as f64, &[" B", " KB", " MB", " GB", " TB", " PB"], 1000.0)
}

pub fn readable_flops(f: f64) -> String {
    scaled(f, &[" FLOP", " kFLOP", " MFLOP", " GFLOP", " TFLOP", " PFLOP"], 1000.0)
}

/// "80GB", "96 GiB", "512MB", "1e9" (bytes) → bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = || Error::new(format!("`{text}` is not a size like 80GB, 96GiB or 512MB"));
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        _ => return Err(bad()),
    };
    let bytes = v * mult;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_ACTIVATION_BUDGET_MB;

    fn small() -> PlanInput {
        let model = serde_json::from_str(
            r#"{"in_channels":1,"patch_size":2,"hidden_size":16,"depth":4,"num_heads":2,"mlp_hidden_dim":32,"qkv_bias":false,"context_dim":8}"#,
        )
        .unwrap();
        PlanInput { model, image_size: 4, context_tokens: 2, batch: 3, recompute: Recompute::Auto, activation_budget_mb: ActivationBudget::Mib(DEFAULT_ACTIVATION_BUDGET_MB), memory: None }
    }

    #[test]
    fn small_plan_has_exact_counts() {
        let p = Plan::new(small()).unwrap();
        // patch 16·4 + 16; context_proj 16·8; per block 4·16² + 64·16 + 16·32 + 4·16; final 4·16 + 4.
        let block = 4 * 256 + 64 * 16 + 16 * 32 + 4 * 16;
        assert_eq!(p.params, (64 + 16 + 128 + 4 * block + 64 + 4) as u64);
        assert_eq!(p.params, Layout::new(&p.input.model).numel() as u64);
        assert_eq!(p.state_bytes(), 5 * 4 * p.params);
        // B=3, Li=4, Lt=2, L=6, N=18, D=16, M=32, Nh=2, Dh=8.
        let per_block = 18 * (10 * 16 + 3 * 32 + 3 * 2 + 2);
        let stem = 3 * 4 * 4 + 3 * 4 * 17 + 3 * 2 * 17 + 3 * 2 * 8;
        let rope = 2 * 4 * 4;
        let head = 3 * 4 * 16;
        assert_eq!(p.activations_all, 4 * (rope + stem + head + 4 * per_block) as u64);
        assert_eq!(p.activations_recompute, 4 * (rope + stem + head + 4 * 18 * 16 + per_block) as u64);
        // The trainer's rule: everything fits the default budget; with none, all recomputed.
        assert_eq!((p.trainer_keep, p.activations_trainer), (Keep::All, p.activations_all));
        let tight = Plan::new(PlanInput { activation_budget_mb: ActivationBudget::Mib(0), ..small() }).unwrap();
        assert_eq!((tight.trainer_keep, tight.activations_trainer), (Keep::Tail(0), p.activations_recompute));
        // "auto" resolves on the device's memory: none left after the training state keeps
        // nothing; a large device keeps everything.
        let auto = |memory| Plan::new(PlanInput { activation_budget_mb: ActivationBudget::Auto, memory, ..small() }).unwrap();
        assert_eq!((auto(Some(6 * 4 * p.params as usize)).budget_mib, auto(Some(6 * 4 * p.params as usize)).trainer_keep), (0, Keep::Tail(0)));
        assert_eq!(auto(Some(80 << 30)).trainer_keep, Keep::All);
        assert_eq!(auto(None).budget_mib, DEFAULT_ACTIVATION_BUDGET_MB);
        assert_eq!(p.step_flops, 3.0 * p.forward_flops);
        assert!(p.step_flops_recompute > p.step_flops);
    }

    #[test]
    fn stages_cover_the_model_and_device_count_is_the_smallest_that_fits() {
        let p = Plan::new(small()).unwrap();
        let two = p.stages(2, false).unwrap();
        assert_eq!(two.iter().map(|s| s.params).sum::<u64>(), p.params);
        assert_eq!((two[0].blocks.clone(), two[1].blocks.clone()), (0..2, 2..4));
        let one = p.stages(1, false).unwrap()[0].total();
        assert_eq!(p.fewest_devices(one, false).unwrap().unwrap().0, 1);
        let (n, stages) = p.fewest_devices(one - 1, false).unwrap().unwrap();
        assert!(n >= 2 && stages.iter().all(|s| s.total() < one));
        let (n, _) = p.fewest_devices(two.iter().map(StageMemory::total).max().unwrap(), false).unwrap().unwrap();
        assert!(n <= 2);
        assert!(p.fewest_devices(100, false).unwrap().is_none());
    }

    #[test]
    fn formats_and_sizes() {
        assert_eq!(digits(13_635_584_000), "13,635,584,000");
        assert_eq!(digits(950), "950");
        assert_eq!(readable_count(13_635_584_000), "13.6 B");
        assert_eq!(readable_bytes(54_542_336_000), "54.5 GB");
        assert_eq!(parse_size("80GB").unwrap(), 80_000_000_000);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("2e9").unwrap(), 2_000_000_000);
        assert!(parse_size("eighty").unwrap_err().0.contains("not a size"));
        assert!(parse_size("80XB").is_err() && parse_size("0").is_err());
        assert_eq!(even_split(10, 3), vec![0..3, 3..6, 6..10]);
    }
}
