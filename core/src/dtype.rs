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

/// f32 values → 16-bit patterns of `dtype` (F16 or Bf16), rounding to nearest even; `None`
/// for F32, which has no 16-bit pattern.
pub fn to_bits(values: &[f32], dtype: Dtype) -> Option<Vec<u16>> {
    match dtype {
        Dtype::F32 => None,
        Dtype::F16 => Some(values.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect()),
        Dtype::Bf16 => Some(values.iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect()),
    }
}

/// 16-bit patterns of `dtype` → f32 into `out` (exact: every f16 and bf16 value is an f32);
/// the reference of `Backend::unpack`. F32 patterns are taken as bf16 (callers never pass it).
pub fn unpack_into(bits: &[u16], dtype: Dtype, out: &mut [f32]) {
    match dtype {
        Dtype::F16 => bits.iter().zip(out).for_each(|(&b, o)| *o = half::f16::from_bits(b).to_f32()),
        Dtype::Bf16 | Dtype::F32 => bits.iter().zip(out).for_each(|(&b, o)| *o = f32::from_bits((b as u32) << 16)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_exactly_and_unpack_agrees_with_decode() {
        // Normal, subnormal (f16 2^-24, 2^-15), signed zero, the largest finite values.
        let v = [1.0f32, -2.5, 5.960_464_5e-8, 3.051_757_8e-5, -0.0, 65504.0, 3.389_531_4e38, 0.1];
        for d in [Dtype::F16, Dtype::Bf16] {
            let bits = to_bits(&v, d).unwrap();
            let mut out = alloc::vec![0.0; v.len()];
            unpack_into(&bits, d, &mut out);
            let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
            assert_eq!(out, decode_le(&bytes, d), "{d:?}");
            assert_eq!(to_bits(&out, d).unwrap(), bits, "{d:?}: a second rounding changes nothing");
        }
        assert_eq!(to_bits(&v, Dtype::F32), None);
        let mut out = [0.0f32; 2];
        unpack_into(&[0x3c00, 0x0001], Dtype::F16, &mut out);
        assert_eq!(out, [1.0, 5.960_464_5e-8]);
        unpack_into(&[0x3f80, 0xc000], Dtype::Bf16, &mut out);
        assert_eq!(out, [1.0, -2.0]);
    }

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
