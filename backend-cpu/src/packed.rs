//! Weights kept in 16 bits (f16 or bf16) in host memory, unpacked to f32 tensors on demand.

use crate::checks::check;
use crate::simd::Out;
use crate::{Cpu, CpuTensor};
use mvdit_core::backend::packed_check;
use mvdit_core::dtype::{unpack_into, Dtype};
use mvdit_core::BResult;

/// A tensor of 16-bit patterns with its dtype and shape.
#[derive(Clone, Debug)]
pub struct CpuPacked {
    bits: Vec<u16>,
    dtype: Dtype,
    shape: Vec<usize>,
}

impl Cpu {
    pub(crate) fn upload_packed_bits(
        &self,
        bits: &[u16],
        dtype: Dtype,
        shape: &[usize],
    ) -> BResult<CpuPacked> {
        packed_check(bits.len(), dtype, shape)?;
        Ok(CpuPacked {
            bits: bits.to_vec(),
            dtype,
            shape: shape.to_vec(),
        })
    }

    /// packed → out: f32 of its shape, blocks of values in parallel.
    pub(crate) fn unpack_bits(&self, p: &CpuPacked) -> BResult<CpuTensor> {
        check(p.bits.len() == p.shape.iter().product::<usize>(), || {
            format!("unpack: {} values for shape {:?}", p.bits.len(), p.shape)
        })?;
        let mut y = CpuTensor::uninit(&p.shape);
        let yo = Out::new(&mut y.data);
        self.rows(p.bits.len(), 1, |r| {
            // SAFETY: elements r belong to this block.
            let yb = unsafe { yo.part(r.start, r.len()) };
            unpack_into(&p.bits[r], p.dtype, yb);
        });
        Ok(y)
    }
}
