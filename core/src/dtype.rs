//! Checkpoint element types: released checkpoints may store f16/bf16; compute is f32.

use alloc::vec::Vec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }
}

/// Little-endian bytes of `dtype` → f32 values. `bytes.len()` must be a multiple of the size.
pub fn decode_le(bytes: &[u8], dtype: Dtype) -> Vec<f32> {
    match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::Bf16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_dtype() {
        assert_eq!(decode_le(&1.5f32.to_le_bytes(), Dtype::F32), [1.5]);
        assert_eq!(decode_le(&half::f16::from_f32(-2.0).to_le_bytes(), Dtype::F16), [-2.0]);
        assert_eq!(decode_le(&half::bf16::from_f32(0.25).to_le_bytes(), Dtype::Bf16), [0.25]);
        assert_eq!(Dtype::Bf16.size(), 2);
    }
}
