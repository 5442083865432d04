//! PNG writers for `[C, H, W]` images with values in `[-1, 1]`: single images and sample grids.
//!
//! Values map to 8 bits by `round((v + 1) * 127.5)`, clamped to `0..=255` (NaN becomes 0).
//! One channel is written as 8-bit grey, three as 8-bit RGB. Missing parent folders are
//! created.

use std::fmt;
use std::path::{Path, PathBuf};

use image::{ExtendedColorType, ImageFormat};

/// Grey level of the 1-pixel gaps between grid cells (and of empty trailing cells).
pub const GRID_GAP_VALUE: u8 = 128;

/// Why an image could not be written.
#[derive(Debug)]
pub enum ImageWriteError {
    /// Inconsistent or unsupported shape arguments.
    Shape(String),
    /// Creating the parent folder failed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Encoding or writing the PNG failed.
    Encode {
        path: PathBuf,
        source: image::ImageError,
    },
}

impl fmt::Display for ImageWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageWriteError::Shape(m) => write!(f, "cannot write image: {m}"),
            ImageWriteError::Io { path, source } => {
                write!(f, "cannot create {}: {source}", path.display())
            }
            ImageWriteError::Encode { path, source } => {
                write!(f, "cannot write PNG {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for ImageWriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImageWriteError::Shape(_) => None,
            ImageWriteError::Io { source, .. } => Some(source),
            ImageWriteError::Encode { source, .. } => Some(source),
        }
    }
}

/// `[-1, 1]` to `0..=255`: `round((v + 1) * 127.5)`, saturating; NaN gives 0.
pub fn to_u8(v: f32) -> u8 {
    // `as` saturates and maps NaN to 0.
    ((v + 1.0) * 127.5).round() as u8
}

/// `[-1, 1]` to `0..=255` as the release's `sample.py` does: `(v·0.5 + 0.5)·255`, clamped,
/// truncated (not rounded).
pub fn to_u8_truncated(v: f32) -> u8 {
    ((v * 0.5 + 0.5) * 255.0).clamp(0.0, 255.0) as u8
}

/// Writes one `[c, h, w]` image (`c` = 1 grey or 3 RGB) as a PNG of `w x h` pixels.
pub fn save_image(
    path: impl AsRef<Path>,
    pixels: &[f32],
    c: usize,
    h: usize,
    w: usize,
) -> Result<(), ImageWriteError> {
    check_shape(c, h, w)?;
    if pixels.len() != c * h * w {
        return Err(ImageWriteError::Shape(format!(
            "{} values for a {c}x{h}x{w} image",
            pixels.len()
        )));
    }
    let (rows, cols) = (h, w);
    let mut buf = vec![0u8; rows * cols * c];
    blit(&mut buf, cols, c, pixels, h, w, 0, 0, 1);
    write_png(path.as_ref(), &buf, cols, rows, c)
}

/// Writes `n = images.len() / (c * h * w)` images (flat, each `[c, h, w]`, e.g. a batch or
/// [`crate::data::Dataset::images`]) as a grid PNG: `cols` per row (fewer if `n < cols`),
/// each upscaled `scale` times by pixel repetition (nearest neighbour), 1-pixel gaps of grey
/// [`GRID_GAP_VALUE`] between cells, no outer border. The size is
/// `cols' * w * scale + cols' - 1` by `rows * h * scale + rows - 1`, where
/// `cols' = min(cols, n)` and `rows = ceil(n / cols')`.
pub fn save_grid(
    path: impl AsRef<Path>,
    images: &[f32],
    c: usize,
    h: usize,
    w: usize,
    cols: usize,
    scale: usize,
) -> Result<(), ImageWriteError> {
    let (buf, width, height) = render_grid(images, c, h, w, cols, scale)?;
    write_png(path.as_ref(), &buf, width, height, c)
}

/// [`save_grid`] for images held separately; every image must have `c * h * w` values.
pub fn save_grid_vecs(
    path: impl AsRef<Path>,
    images: &[Vec<f32>],
    c: usize,
    h: usize,
    w: usize,
    cols: usize,
    scale: usize,
) -> Result<(), ImageWriteError> {
    if let Some((i, bad)) = images
        .iter()
        .enumerate()
        .find(|(_, v)| v.len() != c * h * w)
    {
        return Err(ImageWriteError::Shape(format!(
            "image {i} has {} values, expected {c}x{h}x{w}",
            bad.len()
        )));
    }
    save_grid(path, &images.concat(), c, h, w, cols, scale)
}

/// The grid of [`save_grid`] as interleaved 8-bit pixels (grey, or RGB when `c == 3`):
/// `(buffer, width, height)`.
pub fn render_grid(
    images: &[f32],
    c: usize,
    h: usize,
    w: usize,
    cols: usize,
    scale: usize,
) -> Result<(Vec<u8>, usize, usize), ImageWriteError> {
    check_shape(c, h, w)?;
    if cols == 0 || scale == 0 {
        return Err(ImageWriteError::Shape(format!(
            "cols ({cols}) and scale ({scale}) must be positive"
        )));
    }
    let per = c * h * w;
    if images.is_empty() || !images.len().is_multiple_of(per) {
        return Err(ImageWriteError::Shape(format!(
            "{} values is not a positive whole number of {c}x{h}x{w} images",
            images.len()
        )));
    }
    let n = images.len() / per;
    let cols = cols.min(n);
    let rows = n.div_ceil(cols);
    let (cell_w, cell_h) = (w * scale, h * scale);
    let width = cols * cell_w + cols - 1;
    let height = rows * cell_h + rows - 1;
    if width > u32::MAX as usize
        || height > u32::MAX as usize
        || width.saturating_mul(height) > (1 << 31)
    {
        return Err(ImageWriteError::Shape(format!(
            "grid of {width}x{height} pixels is too large"
        )));
    }
    let mut buf = vec![GRID_GAP_VALUE; width * height * c];
    for (i, img) in images.chunks_exact(per).enumerate() {
        let (r, k) = (i / cols, i % cols);
        blit(
            &mut buf,
            width,
            c,
            img,
            h,
            w,
            r * (cell_h + 1),
            k * (cell_w + 1),
            scale,
        );
    }
    Ok((buf, width, height))
}

fn check_shape(c: usize, h: usize, w: usize) -> Result<(), ImageWriteError> {
    if c != 1 && c != 3 {
        return Err(ImageWriteError::Shape(format!(
            "{c} channels (only 1 = grey and 3 = RGB are written)"
        )));
    }
    if h == 0 || w == 0 {
        return Err(ImageWriteError::Shape(format!("empty image {h}x{w}")));
    }
    Ok(())
}

/// Copies a `[c, h, w]` image into an interleaved buffer `buf_w` pixels wide at
/// (`top`, `left`), each source pixel becoming a `scale x scale` block.
#[allow(clippy::too_many_arguments)]
fn blit(
    buf: &mut [u8],
    buf_w: usize,
    c: usize,
    img: &[f32],
    h: usize,
    w: usize,
    top: usize,
    left: usize,
    scale: usize,
) {
    let plane = h * w;
    for y in 0..h * scale {
        for x in 0..w * scale {
            let src = (y / scale) * w + x / scale;
            let dst = ((top + y) * buf_w + left + x) * c;
            for ch in 0..c {
                buf[dst + ch] = to_u8(img[ch * plane + src]);
            }
        }
    }
}

pub(crate) fn write_png(
    path: &Path,
    buf: &[u8],
    width: usize,
    height: usize,
    c: usize,
) -> Result<(), ImageWriteError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| ImageWriteError::Io {
            path: parent.to_path_buf(),
            source: e,
        })?;
    }
    let color = if c == 1 {
        ExtendedColorType::L8
    } else {
        ExtendedColorType::Rgb8
    };
    let (w, h) = (u32::try_from(width), u32::try_from(height));
    let (Ok(w), Ok(h)) = (w, h) else {
        return Err(ImageWriteError::Shape(format!(
            "image of {width}x{height} pixels is too large"
        )));
    };
    image::save_buffer_with_format(path, buf, w, h, color, ImageFormat::Png).map_err(|e| {
        ImageWriteError::Encode {
            path: path.to_path_buf(),
            source: e,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::DynamicImage;

    fn read(path: &Path) -> DynamicImage {
        image::open(path).unwrap()
    }

    #[test]
    fn value_mapping() {
        assert_eq!(to_u8(-1.0), 0);
        assert_eq!(to_u8(1.0), 255);
        assert_eq!(to_u8(0.0), 128); // 127.5 rounds away from zero
        assert_eq!(to_u8(-5.0), 0);
        assert_eq!(to_u8(5.0), 255);
        assert_eq!(to_u8(f32::NAN), 0);
    }

    #[test]
    fn grey_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/dir/g.png"); // parents are created
        let (h, w) = (3, 5);
        let px: Vec<f32> = (0..h * w).map(|i| i as f32 / 7.0 - 1.0).collect();
        save_image(&path, &px, 1, h, w).unwrap();
        let img = read(&path);
        assert!(matches!(img, DynamicImage::ImageLuma8(_)));
        assert_eq!((img.width(), img.height()), (5, 3));
        let raw = img.into_luma8().into_raw();
        let want: Vec<u8> = px.iter().map(|&v| to_u8(v)).collect();
        assert_eq!(raw, want);
    }

    #[test]
    fn rgb_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rgb.png");
        // 2x2: R plane all 1, G plane all -1, B plane a ramp.
        let px = [
            1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -0.5, 0.5, 1.0,
        ];
        save_image(&path, &px, 3, 2, 2).unwrap();
        let img = read(&path);
        assert!(matches!(img, DynamicImage::ImageRgb8(_)));
        let rgb = img.into_rgb8();
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 0, 64]);
        assert_eq!(rgb.get_pixel(0, 1).0, [255, 0, 191]);
        assert_eq!(rgb.get_pixel(1, 1).0, [255, 0, 255]);
    }

    #[test]
    fn grid_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("grid.png");
        // 5 grey 2x2 images with constant values, 3 columns, scale 4.
        let vals = [-1.0f32, -0.5, 0.0, 0.5, 1.0];
        let flat: Vec<f32> = vals.iter().flat_map(|&v| [v; 4]).collect();
        save_grid(&path, &flat, 1, 2, 2, 3, 4).unwrap();
        let g = read(&path).into_luma8();
        // width = 3 * 8 + 2 gaps, height = 2 * 8 + 1 gap.
        assert_eq!(g.dimensions(), (26, 17));
        for (i, &v) in vals.iter().enumerate() {
            let (x0, y0) = ((i % 3) as u32 * 9, (i / 3) as u32 * 9);
            for dy in 0..8 {
                for dx in 0..8 {
                    assert_eq!(g.get_pixel(x0 + dx, y0 + dy).0[0], to_u8(v), "cell {i}");
                }
            }
        }
        // Gaps and the empty sixth cell are gap grey.
        assert_eq!(g.get_pixel(8, 0).0[0], GRID_GAP_VALUE);
        assert_eq!(g.get_pixel(0, 8).0[0], GRID_GAP_VALUE);
        assert_eq!(g.get_pixel(20, 12).0[0], GRID_GAP_VALUE);

        // Fewer images than columns shrinks the grid; Vec form gives the same file content.
        let p2 = tmp.path().join("g2.png");
        save_grid_vecs(&p2, &[vec![1.0; 12], vec![-1.0; 12]], 3, 2, 2, 10, 1).unwrap();
        let g2 = read(&p2).into_rgb8();
        assert_eq!(g2.dimensions(), (5, 2));
        assert_eq!(g2.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(g2.get_pixel(2, 1).0, [128, 128, 128]);
        assert_eq!(g2.get_pixel(4, 1).0, [0, 0, 0]);
    }

    #[test]
    fn digits_grid() {
        let d = crate::data::Dataset::digits(8, 1).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("digits.png");
        save_grid(&path, &d.images[..20 * 64], 1, 8, 8, 10, 4).unwrap();
        let g = read(&path).into_luma8();
        assert_eq!(g.dimensions(), (10 * 32 + 9, 2 * 32 + 1));
        // First digit's top-left pixel is background (black), stroke pixels are bright.
        assert_eq!(g.get_pixel(0, 0).0[0], 0);
        assert!(g.pixels().any(|p| p.0[0] == 255));
    }

    #[test]
    fn errors_not_panics() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.png");
        assert!(matches!(
            save_image(&p, &[0.0; 3], 1, 2, 2),
            Err(ImageWriteError::Shape(_))
        ));
        assert!(matches!(
            save_image(&p, &[0.0; 8], 2, 2, 2),
            Err(ImageWriteError::Shape(_))
        ));
        assert!(matches!(
            save_image(&p, &[], 1, 0, 2),
            Err(ImageWriteError::Shape(_))
        ));
        assert!(matches!(
            save_grid(&p, &[0.0; 4], 1, 2, 2, 0, 1),
            Err(ImageWriteError::Shape(_))
        ));
        assert!(matches!(
            save_grid(&p, &[0.0; 4], 1, 2, 2, 1, 0),
            Err(ImageWriteError::Shape(_))
        ));
        assert!(matches!(
            save_grid(&p, &[0.0; 5], 1, 2, 2, 1, 1),
            Err(ImageWriteError::Shape(_))
        ));
        assert!(matches!(
            save_grid(&p, &[], 1, 2, 2, 1, 1),
            Err(ImageWriteError::Shape(_))
        ));
        assert!(matches!(
            save_grid_vecs(&p, &[vec![0.0; 3]], 1, 2, 2, 1, 1),
            Err(ImageWriteError::Shape(_))
        ));
        // A parent that is a file: creating the folder fails with the path in the message.
        let file = tmp.path().join("afile");
        std::fs::write(&file, "x").unwrap();
        let e = save_image(file.join("y.png"), &[0.0; 4], 1, 2, 2).unwrap_err();
        assert!(matches!(e, ImageWriteError::Io { .. }), "{e}");
        assert!(e.to_string().contains("afile"));
        // Writing to a folder path fails as an encode/write error.
        let e = save_image(tmp.path(), &[0.0; 4], 1, 2, 2).unwrap_err();
        assert!(
            matches!(
                e,
                ImageWriteError::Encode { .. } | ImageWriteError::Io { .. }
            ),
            "{e}"
        );
        assert!(!p.exists());
    }
}
