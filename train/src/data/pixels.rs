//! Pixels in and out of the data sets: the embedded digits decoded, image folders listed, image
//! files decoded and resampled to `[C, H, W]` in `[-1, 1]`.

use super::error::DataError;
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader};
use std::io::Read;
use std::path::{Path, PathBuf};

/// `digits.csv.gz` from scikit-learn (`sklearn/datasets/data/digits.csv.gz`): 1,797 rows of
/// 64 pixel values in `0..=16` (8x8, row-major) followed by the class label `0..=9`.
pub const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");
/// Number of images in the bundled digits set.
pub const DIGITS_LEN: usize = 1797;
/// Native side length of the bundled digits.
pub const DIGITS_NATIVE_SIZE: usize = 8;
/// File extensions (lower-case) that `Dataset::from_folder` reads.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// Bilinear resampling of a `[C, H, W]` image to `[C, out_h, out_w]`, with half-pixel centres
/// (source coordinate `(x + 0.5) * w / out_w - 0.5`) and edges clamped, the convention of
/// PIL and of PyTorch's `align_corners=False`. Meant for upsampling; it does not low-pass
/// when shrinking. Panics if `src.len() != c * h * w`.
pub fn resize_bilinear(src: &[f32], c: usize, h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    assert_eq!(src.len(), c * h * w, "resize_bilinear: buffer is not {c}x{h}x{w}");
    let taps = |out: usize, inp: usize| -> Vec<(usize, usize, f32)> {
        (0..out)
            .map(|o| {
                let s = ((o as f32 + 0.5) * inp as f32 / out as f32 - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(inp - 1);
                let i1 = (i0 + 1).min(inp - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    };
    let ys = taps(out_h, h);
    let xs = taps(out_w, w);
    let mut out = Vec::with_capacity(c * out_h * out_w);
    for plane in src.chunks_exact(h * w) {
        for &(y0, y1, fy) in &ys {
            for &(x0, x1, fx) in &xs {
                let top = plane[y0 * w + x0] * (1.0 - fx) + plane[y0 * w + x1] * fx;
                let bot = plane[y1 * w + x0] * (1.0 - fx) + plane[y1 * w + x1] * fx;
                out.push(top * (1.0 - fy) + bot * fy);
            }
        }
    }
    out
}

/// Pixels in `[-1, 1]` (8x8 images, flat) and labels of the embedded digits.
pub(super) fn decode_digits() -> Result<(Vec<f32>, Vec<u32>), DataError> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ).read_to_string(&mut text).map_err(|e| DataError::Digits(format!("gzip: {e}")))?;
    let npix = DIGITS_NATIVE_SIZE * DIGITS_NATIVE_SIZE;
    let mut pixels = Vec::with_capacity(DIGITS_LEN * npix);
    let mut labels = Vec::with_capacity(DIGITS_LEN);
    for (row, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != npix + 1 {
            return Err(DataError::Digits(format!("row {row}: {} fields, expected {}", fields.len(), npix + 1)));
        }
        for f in &fields[..npix] {
            let v: f32 = f.parse().map_err(|_| DataError::Digits(format!("row {row}: bad pixel {f:?}")))?;
            if !(0.0..=16.0).contains(&v) {
                return Err(DataError::Digits(format!("row {row}: pixel {v} outside 0..=16")));
            }
            pixels.push(v / 8.0 - 1.0);
        }
        let label: f32 = fields[npix].parse().map_err(|_| DataError::Digits(format!("row {row}: bad label {:?}", fields[npix])))?;
        if !(0.0..=9.0).contains(&label) || label.fract() != 0.0 {
            return Err(DataError::Digits(format!("row {row}: label {label} outside 0..=9")));
        }
        labels.push(label as u32);
    }
    if labels.len() != DIGITS_LEN {
        return Err(DataError::Digits(format!("{} rows, expected {DIGITS_LEN}", labels.len())));
    }
    Ok((pixels, labels))
}

/// `(file name, path)` of the entries of `dir`; names that are not UTF-8 are converted lossily.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let io_err = |e| DataError::Io { path: dir.to_path_buf(), source: e };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        out.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
    }
    Ok(out)
}

pub(crate) fn has_image_extension(name: &str) -> bool {
    Path::new(name).extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

pub(crate) fn read_image(path: &Path) -> Result<DynamicImage, DataError> {
    let reader = ImageReader::open(path).map_err(|e| DataError::Io { path: path.to_path_buf(), source: e })?;
    let reader = reader.with_guessed_format().map_err(|e| DataError::Io { path: path.to_path_buf(), source: e })?;
    reader.decode().map_err(|e| DataError::Image { path: path.to_path_buf(), source: e })
}

/// Centre-crop to a square, resize to `size`, convert to `[C, H, W]` in `[-1, 1]`.
pub(crate) fn image_to_chw(img: &DynamicImage, size: usize, channels: usize) -> Vec<f32> {
    let (w, h) = (img.width(), img.height());
    let side = w.min(h);
    let square = if w == h { img.clone() } else { img.crop_imm((w - side) / 2, (h - side) / 2, side, side) };
    let s = size as u32;
    let resized = if side == s { square } else { square.resize_exact(s, s, FilterType::Triangle) };
    let to_unit = |v: u8| f32::from(v) / 127.5 - 1.0;
    let plane = size * size;
    if channels == 1 {
        resized.to_luma8().into_raw().into_iter().map(to_unit).collect()
    } else {
        let rgb = resized.to_rgb8().into_raw();
        let mut out = vec![0.0f32; 3 * plane];
        for (p, px) in rgb.chunks_exact(3).enumerate() {
            for ch in 0..3 {
                out[ch * plane + p] = to_unit(px[ch]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_known_values() {
        // 2 -> 4 along x: half-pixel centres give 0, 0.25, 0.75, 1 (edges clamped).
        let out = resize_bilinear(&[0.0, 1.0], 1, 1, 2, 1, 4);
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
        // Same size is identity.
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(resize_bilinear(&src, 3, 2, 2, 2, 2), src);
        // Constant stays constant.
        assert!(resize_bilinear(&[0.3; 9], 1, 3, 3, 7, 5).iter().all(|&v| (v - 0.3).abs() < 1e-6));
    }
}
