//! Weights kept in 16 bits (f16 or bf16) in device memory, two to a 32-bit word, and unpacked
//! to f32 tensors by `unpack.wgsl` when a stage runs.

use super::*;
use crate::gpu::Grid;
use mvdit_core::backend::packed_check;
use mvdit_core::dtype::Dtype;

/// A tensor of 16-bit patterns on the device (the lower half of each word first).
pub struct GpuPacked<D: GpuDevice> {
    buf: D::Buffer,
    dtype: Dtype,
    shape: Vec<usize>,
    len: usize,
}

/// 16-bit patterns two to a word, the first in the lower half, as f32 bit patterns for upload.
pub(crate) fn pack_words(bits: &[u16]) -> Vec<f32> {
    bits.chunks(2)
        .map(|c| f32::from_bits(c[0] as u32 | (c.get(1).copied().unwrap_or(0) as u32) << 16))
        .collect()
}

impl<D: GpuDevice> GpuBackend<D> {
    pub(crate) fn upload_packed_bits(
        &self,
        bits: &[u16],
        dtype: Dtype,
        shape: &[usize],
    ) -> BResult<GpuPacked<D>> {
        packed_check(bits.len(), dtype, shape)?;
        Ok(GpuPacked {
            buf: self.ctx.upload(&pack_words(bits))?,
            dtype,
            shape: shape.to_vec(),
            len: bits.len(),
        })
    }

    /// packed → out: f32 of its shape.
    pub(crate) fn unpack_gpu(&self, p: &GpuPacked<D>) -> BResult<GpuTensor<D>> {
        let y = self.alloc(&p.shape)?;
        if y.len == 0 {
            return Ok(y);
        }
        let mode = if p.dtype == Dtype::F16 { 1 } else { 0 };
        self.ctx.run(
            "unpack",
            &[u(p.len), mode],
            &[&p.buf, &y.buf],
            Grid::Threads(p.len as u64),
        )?;
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_hold_two_patterns_lower_half_first() {
        let w = pack_words(&[0x1234, 0xabcd, 0x0001]);
        assert_eq!(
            w.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            [0xabcd_1234, 0x0000_0001]
        );
    }
}
