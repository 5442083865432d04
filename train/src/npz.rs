//! Sample sets in the ADM evaluation suite's format (what DiT's sampling script writes for
//! FID/IS): an `.npz` (a zip of `.npy` files) holding `arr_0`, uint8 [N, H, W, 3].

use crate::images::to_u8_truncated;
use mvdit_model::tensorfile::write_atomic_with;
use mvdit_model::{Error, Result};
use std::io::Write;
use std::path::Path;

/// The `.npy` (format 1.0) bytes of a C-order uint8 array.
pub fn npy_u8(data: &[u8], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {tuple}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n', padded with spaces to 64 bytes.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// [C, H, W] images in [-1, 1] (C = 1 or 3) → HWC RGB bytes as `sample.py` makes them
/// ([`to_u8_truncated`]; grey repeated over the three channels).
pub fn to_rgb_u8(images: &[f32], c: usize, h: usize, w: usize) -> Vec<u8> {
    let per = c * h * w;
    let mut out = Vec::with_capacity(images.len() / c * 3);
    for img in images.chunks_exact(per) {
        for p in 0..h * w {
            for ch in 0..3 {
                let v = img[(ch % c) * h * w + p];
                out.push(to_u8_truncated(v));
            }
        }
    }
    out
}

/// Writes `arr_0` uint8 [N, H, W, 3] as an `.npz`, atomically.
pub fn write_npz(path: &Path, rgb: &[u8], n: usize, h: usize, w: usize) -> Result<()> {
    if rgb.len() != n * h * w * 3 {
        return Err(Error::new(format!("{}: {} bytes for {n} images of {h}x{w}x3", path.display(), rgb.len())));
    }
    let npy = npy_u8(rgb, &[n, h, w, 3]);
    write_atomic_with(path, |tmp| {
        let f = std::fs::File::create(tmp).map_err(|e| Error::new(format!("{}: cannot create: {e}", path.display())))?;
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(npy.len() > u32::MAX as usize);
        let werr = |e: &dyn std::fmt::Display| Error::new(format!("{}: cannot write: {e}", path.display()));
        z.start_file("arr_0.npy", opts).map_err(|e| werr(&e))?;
        z.write_all(&npy).map_err(|e| werr(&e))?;
        z.finish().map_err(|e| werr(&e))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_describes_the_array() {
        let b = npy_u8(&[1, 2, 3, 4, 5, 6], &[1, 2, 1, 3]);
        assert_eq!(&b[..6], b"\x93NUMPY");
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hl]).unwrap();
        assert!(header.starts_with("{'descr': '|u1', 'fortran_order': False, 'shape': (1, 2, 1, 3), }") && header.ends_with('\n'), "{header}");
        assert_eq!(&b[10 + hl..], [1, 2, 3, 4, 5, 6]);
        assert!(std::str::from_utf8(&npy_u8(&[7], &[1])[10..]).unwrap().contains("'shape': (1,)"));
    }

    #[test]
    fn grey_images_become_rgb_and_values_truncate() {
        assert_eq!(to_rgb_u8(&[-1.0, 0.999], 1, 1, 2), [0, 0, 0, 254, 254, 254]);
        assert_eq!(to_rgb_u8(&[1.0, -1.0, 0.0], 3, 1, 1), [255, 0, 127]);
    }
}
