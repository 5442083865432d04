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

/// f32 values → little-endian bytes of `dtype`, rounding to nearest even for the 16-bit types
/// (as torch's `.to(dtype)`).
pub fn encode_le(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        Dtype::Bf16 => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
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

    #[test]
    fn encodes_each_dtype_rounding_to_nearest_even() {
        let v = [1.0f32 + 1.0 / 256.0 + 1.0 / 65536.0, -3.5, 1.0e-3];
        for d in [Dtype::F32, Dtype::F16, Dtype::Bf16] {
            let back = decode_le(&encode_le(&v, d), d);
            let want: Vec<f32> = match d {
                Dtype::F32 => v.to_vec(),
                Dtype::F16 => v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect(),
                Dtype::Bf16 => v.iter().map(|&x| half::bf16::from_f32(x).to_f32()).collect(),
            };
            assert_eq!(back, want, "{d:?}");
        }
        // 1 + 2^-8 is half-way between two bf16 values: ties go to the even one (1.0)
        assert_eq!(decode_le(&encode_le(&[1.0 + 1.0 / 256.0], Dtype::Bf16), Dtype::Bf16), [1.0]);
    }
}
