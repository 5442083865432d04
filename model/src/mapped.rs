//! Helpers for tensors read out of a memory-mapped file, shared by the safetensors reader
//! ([`crate::weights`]) and the PyTorch checkpoint reader ([`crate::pt`]): read-ahead advice,
//! dropping the pages of a tensor once decoded, and decoding with a check for finite values.

use crate::error::{Error, Result};
use memmap2::Mmap;
use mvdit_core::dtype::{decode_le, Dtype};

/// Drops the mapped pages of `bytes` from this process (they are decoded; the page cache keeps
/// them for the next read), so reading a file larger than memory tensor by tensor does not grow
/// the resident set by the file's size. (memmap2 widens the range to whole pages.) No effect off
/// Unix.
pub(crate) fn release(m: &Mmap, bytes: std::ops::Range<usize>) {
    #[cfg(unix)]
    {
        // SAFETY: the map is a read-only view of a file; after MADV_DONTNEED the next access of
        // these pages (by this thread or another reading the same map) faults the same file
        // contents back in, so no reader, even one holding a borrow, can observe a change.
        let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, bytes.start, bytes.len()) };
    }
    #[cfg(not(unix))]
    let _ = (m, bytes);
}

/// Random access (no read-around) on `m`, or back to normal. A `.pt`'s index reads one small
/// local header before each tensor: with read-around (8 MB on some disks) that alone reads
/// the whole file. No effect off Unix.
pub(crate) fn advise_random(m: &Mmap, random: bool) {
    #[cfg(unix)]
    let _ = m.advise(if random { memmap2::Advice::Random } else { memmap2::Advice::Normal });
    #[cfg(not(unix))]
    let _ = (m, random);
}

/// `bytes` of `dtype` decoded to f32; a non-finite value is an error naming `origin` and tensor
/// `name`.
pub(crate) fn decode_finite(bytes: &[u8], dtype: Dtype, origin: &str, name: &str) -> Result<Vec<f32>> {
    let data = decode_le(bytes, dtype);
    match data.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::new(format!("{origin}: tensor `{name}` has a non-finite value {} at element {i}", data[i]))),
        None => Ok(data),
    }
}
