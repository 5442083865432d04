//! A DiT whose weights are held in 16 bits (bf16 or f16) on the device and unpacked to f32 one
//! stage of blocks at a time, just before the stage runs: half the memory of f32, the same f32
//! compute, and bit for bit the output of the same weights held in f32.

use crate::dit::{compute_shape, Dit, StageIn, StageOut};
use crate::error::{Error, Result};
use crate::tape::Keep;
use mvdit_core::dtype::{to_bits, unpack_into, Dtype};
use mvdit_core::{Backend, Dims, Layout, ModelConfig, ParamSpec, Part};
use std::ops::Range;

/// The most f32 bytes of weights a 16-bit model unpacks at once (one stage).
pub const UNPACK_STAGE_BYTES: usize = 256 << 20;

pub struct PackedDit<B: Backend> {
    pub cfg: ModelConfig,
    pub dtype: Dtype,
    /// Every parameter in layout order.
    params: Vec<B::Packed>,
    /// The stages unpacked in turn.
    pub stages: Vec<Range<usize>>,
}

/// `values` (one parameter) rounded to 16-bit `dtype`: nearest even; a value that would round
/// to infinity (beyond ±65504 for f16, ±3.39·10³⁸ for bf16) is refused, naming `origin` and
/// tensor `name`.
pub fn round_to(values: &[f32], dtype: Dtype, origin: &str, name: &str) -> Result<Vec<u16>> {
    let bits = to_bits(values, dtype).ok_or_else(|| Error::new("internal: 16-bit weights need the f16 or bf16 dtype"))?;
    let inf = |b: u16| match dtype {
        Dtype::F16 => b & 0x7fff == 0x7c00,
        _ => b & 0x7fff == 0x7f80,
    };
    if let Some(i) = bits.iter().position(|&b| inf(b)) {
        let hint = if dtype == Dtype::F16 { "use --weights bf16 or f32" } else { "use --weights f32" };
        return Err(Error::new(format!("{origin}: tensor `{name}` holds {}, outside {}'s range; {hint}", values[i], if dtype == Dtype::F16 { "f16" } else { "bf16" })));
    }
    Ok(bits)
}

/// Each of `values` (parameters `specs`, in order) rounded in place to 16-bit `dtype`: the
/// numbers of the model held in it (errors as [`round_to`]).
pub fn round_each(specs: &[ParamSpec], values: &mut [Vec<f32>], dtype: Dtype, origin: &str) -> Result<()> {
    for (s, v) in specs.iter().zip(values) {
        let bits = round_to(v, dtype, origin, &s.name)?;
        unpack_into(&bits, dtype, v);
    }
    Ok(())
}

impl<B: Backend> PackedDit<B> {
    /// The parameters of `cfg`'s layout, in order, as `next(index)` gives their f32 values one
    /// at a time, rounded to `dtype` and kept on the device; `stages` unpacked in turn.
    pub fn build(
        be: &B,
        cfg: ModelConfig,
        dtype: Dtype,
        stages: Vec<Range<usize>>,
        origin: &str,
        mut next: impl FnMut(usize) -> Result<Vec<f32>>,
    ) -> Result<Self> {
        let layout = Layout::new(&cfg);
        let params = layout
            .specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let values = next(i)?;
                if values.len() != s.numel() {
                    return Err(Error::new(format!("{origin}: parameter `{}`: {} values for shape {:?}", s.name, values.len(), s.shape)));
                }
                Ok(be.upload_packed(&round_to(&values, dtype, origin, &s.name)?, dtype, &compute_shape(&s.shape))?)
            })
            .collect::<Result<_>>()?;
        Ok(PackedDit { cfg, dtype, params, stages })
    }

    /// `part` of the model, unpacked to f32.
    pub fn part(&self, be: &B, part: Part) -> Result<Dit<B>> {
        let range = Layout::new(&self.cfg).part_params(&part);
        let tensors = self.params[range].iter().map(|p| be.unpack(p)).collect::<std::result::Result<Vec<_>, _>>()?;
        Dit::part_from_tensors(be, self.cfg.clone(), part, tensors)
    }

    /// The velocity [B, C, H, W] at x under context [B, Lt, Dc]: the stages in depth order,
    /// each unpacked to f32 just before it runs and dropped after.
    pub fn velocity(&self, be: &B, x: &B::Tensor, context: B::Tensor) -> Result<B::Tensor> {
        let xs = be.shape(x).to_vec();
        let lt = be.shape(&context).get(1).copied().unwrap_or(0);
        let mut input = StageIn::Inputs { x, context };
        for r in &self.stages {
            let stage = self.part(be, Part::stage(r.clone(), self.cfg.depth))?;
            match stage.stage_forward(be, input, Keep::Nothing, None)?.0 {
                StageOut::Tokens(t) => input = StageIn::Tokens { t, dims: Dims::new(&self.cfg, xs[0], xs[2], xs[3], lt)? },
                StageOut::Velocity(v) => return Ok(v),
            }
        }
        Err(Error::new("internal: the last 16-bit stage handed on tokens"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_refuses_what_f16_cannot_hold() {
        assert_eq!(round_to(&[1.0, -2.0], Dtype::Bf16, "f", "w").unwrap(), [0x3f80, 0xc000]);
        assert_eq!(round_to(&[65504.0], Dtype::F16, "f", "w").unwrap(), [0x7bff]);
        let e = round_to(&[1.0, 7.0e4], Dtype::F16, "m.safetensors", "blocks.0.w").unwrap_err().to_string();
        assert!(e.contains("m.safetensors") && e.contains("`blocks.0.w`") && e.contains("f16's range"), "{e}");
        assert!(round_to(&[1.0], Dtype::F32, "f", "w").is_err());
        // bf16's largest finite value stays; beyond it rounds to infinity and is refused.
        assert_eq!(round_to(&[3.389_531_4e38], Dtype::Bf16, "f", "w").unwrap(), [0x7f7f]);
        assert!(round_to(&[-3.4e38], Dtype::Bf16, "f", "w").unwrap_err().to_string().contains("bf16's range"));
    }
}
