//! Labelled image datasets with pixel values in `[-1, 1]`, stored per image as `[C, H, W]`
//! (channel-major, row-major within a channel) in one flat `Vec<f32>`.
//!
//! Two sources:
//! * [`Dataset::digits`]: the UCI "Optical Recognition of Handwritten Digits" test set
//!   (1,797 grey 8x8 digits, 10 classes), embedded in the binary, optionally upsampled
//!   bilinearly to any square size (16 is the intended alternative to the native 8).
//! * [`Dataset::from_folder`]: a folder of PNG/JPEG images with one sub-folder per class.
//!
//! [`Dataset::split`] makes a deterministic, per-class (stratified) held-out split.

mod error;
pub mod order;
mod pixels;

pub use error::DataError;
pub use pixels::{resize_bilinear, DIGITS_CSV_GZ, DIGITS_LEN, DIGITS_NATIVE_SIZE, IMAGE_EXTENSIONS};

use mvdit_core::rng::SplitMix64;
use pixels::decode_digits;
pub(crate) use pixels::{has_image_extension, image_to_chw, list_dir, read_image};
use std::path::{Path, PathBuf};

/// Largest side length accepted by the loaders.
pub const MAX_IMAGE_SIZE: usize = 1024;

/// Credit line for the bundled digits data, for the README and `--help`.
pub const DIGITS_CREDIT: &str = "Handwritten digits: E. Alpaydin and C. Kaynak, \"Optical Recognition of \
Handwritten Digits\", UCI Machine Learning Repository, 1998 (https://doi.org/10.24432/C50P49), \
licensed CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); the 1,797-image test set as \
shipped by scikit-learn (sklearn/datasets/data/digits.csv.gz), pixel counts 0..16 rescaled to [-1, 1].";

/// Where the training images come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// The embedded UCI digits set.
    Digits,
    /// A folder with one sub-folder of images per class (`--data DIR`).
    Folder(PathBuf),
}

/// Labelled square images, all `channels x size x size`, values in `[-1, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Height = width.
    pub size: usize,
    /// `len() * channels * size * size` values; image `i` is `[C, H, W]` at
    /// `i * image_len() ..`.
    pub images: Vec<f32>,
    /// Class index of each image, `< class_names.len()`.
    pub labels: Vec<u32>,
    /// Class names, indexed by label.
    pub class_names: Vec<String>,
    /// Caption contexts, for samples conditioned on text instead of their label.
    pub text: Option<Text>,
}

/// The caption context of every sample of a [`Dataset`], and the empty prompt's.
#[derive(Clone, Debug, PartialEq)]
pub struct Text {
    /// `len() * tokens * dim` values; sample `i`'s [Lt, D] at `i * tokens * dim`.
    pub contexts: Vec<f32>,
    /// Lt.
    pub tokens: usize,
    /// D.
    pub dim: usize,
    /// The empty prompt's context [Lt, D]: what caption dropout puts in a caption's place.
    pub empty: Vec<f32>,
}

impl Text {
    /// Values per context: Lt·D.
    pub fn len(&self) -> usize {
        self.tokens * self.dim
    }
}

impl Dataset {
    /// Checks the invariants listed on the fields.
    pub fn new(channels: usize, size: usize, images: Vec<f32>, labels: Vec<u32>, class_names: Vec<String>) -> Result<Dataset, DataError> {
        if channels == 0 {
            return Err(DataError::Config("channels must be at least 1".into()));
        }
        check_size(size)?;
        let per = channels * size * size;
        if images.len() != labels.len() * per {
            return Err(DataError::Config(format!(
                "{} pixel values for {} labels of {channels}x{size}x{size} images (expected {})",
                images.len(),
                labels.len(),
                labels.len() * per
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= class_names.len()) {
            return Err(DataError::Config(format!("label {bad} out of range for {} classes", class_names.len())));
        }
        Ok(Dataset { channels, size, images, labels, class_names, text: None })
    }

    /// Latents [C, h, h] (any channel count) with labels, and caption contexts when `text` is
    /// given (one per sample, checked).
    pub fn latents(channels: usize, size: usize, images: Vec<f32>, labels: Vec<u32>, class_names: Vec<String>, text: Option<Text>) -> Result<Dataset, DataError> {
        let mut d = Dataset::new(channels, size, images, labels, class_names)?;
        if let Some(t) = &text {
            if t.contexts.len() != d.len() * t.len() || t.empty.len() != t.len() {
                return Err(DataError::Config(format!(
                    "{} context values (and {} for the empty prompt) for {} samples of [{}, {}]",
                    t.contexts.len(),
                    t.empty.len(),
                    d.len(),
                    t.tokens,
                    t.dim
                )));
            }
        }
        d.text = text;
        Ok(d)
    }

    /// Loads `source` at `size x size` with `channels` (1 or 3) channels.
    pub fn load(source: &DataSource, size: usize, channels: usize) -> Result<Dataset, DataError> {
        match source {
            DataSource::Digits => Dataset::digits(size, channels),
            DataSource::Folder(dir) => Dataset::from_folder(dir, size, channels),
        }
    }

    /// The embedded UCI digits: 1,797 images, labels `0..=9`, class names `"0"`..`"9"`.
    ///
    /// Pixel counts `0..=16` map linearly to `[-1, 1]` (`v / 8 - 1`), so the background is -1.
    /// `size == 8` gives the data unchanged; any other size (16 is the intended one) is
    /// resampled with [`resize_bilinear`] (half-pixel centres, edge clamp: bilinear keeps the
    /// strokes smooth, where nearest would just make 2x2 blocks). `channels == 3` repeats the
    /// grey plane three times.
    pub fn digits(size: usize, channels: usize) -> Result<Dataset, DataError> {
        check_channels(channels)?;
        check_size(size)?;
        let (native, labels) = decode_digits()?;
        let n = labels.len();
        let src_len = DIGITS_NATIVE_SIZE * DIGITS_NATIVE_SIZE;
        let plane = size * size;
        let mut images = Vec::with_capacity(n * channels * plane);
        for img in native.chunks_exact(src_len) {
            let grey = if size == DIGITS_NATIVE_SIZE { img.to_vec() } else { resize_bilinear(img, 1, DIGITS_NATIVE_SIZE, DIGITS_NATIVE_SIZE, size, size) };
            for _ in 0..channels {
                images.extend_from_slice(&grey);
            }
        }
        let class_names = (0..10).map(|d| d.to_string()).collect();
        Dataset::new(channels, size, images, labels, class_names)
    }

    /// Loads `dir/<class>/<image>.{png,jpg,jpeg}`.
    ///
    /// * Classes are the non-hidden sub-folders of `dir`, sorted by name; the label is the
    ///   index in that order and `class_names` keeps the folder names.
    /// * Inside a class folder, files with a PNG/JPEG extension (any case) are read in name
    ///   order; other files, hidden files and nested folders are ignored, as are plain files
    ///   directly in `dir`. The format is sniffed from the content, not the extension.
    /// * Each image is centre-cropped to a square, resized to `size x size` with a triangle
    ///   (bilinear) filter, and converted to grey (`channels == 1`, Rec. 709 luma) or RGB
    ///   (`channels == 3`; alpha is dropped). 8-bit values map to `[-1, 1]` by `v / 127.5 - 1`.
    ///
    /// Errors: [`DataError::MissingFolder`], [`DataError::NotAFolder`],
    /// [`DataError::NoClassFolders`], [`DataError::EmptyClass`], [`DataError::Image`] for a
    /// file that does not decode, [`DataError::Io`] for listing failures.
    pub fn from_folder(dir: impl AsRef<Path>, size: usize, channels: usize) -> Result<Dataset, DataError> {
        let dir = dir.as_ref();
        check_channels(channels)?;
        check_size(size)?;
        let meta = std::fs::metadata(dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DataError::MissingFolder(dir.to_path_buf())
            } else {
                DataError::Io { path: dir.to_path_buf(), source: e }
            }
        })?;
        if !meta.is_dir() {
            return Err(DataError::NotAFolder(dir.to_path_buf()));
        }
        let mut classes: Vec<(String, PathBuf)> = Vec::new();
        for entry in list_dir(dir)? {
            let (name, path) = entry;
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                classes.push((name, path));
            }
        }
        if classes.is_empty() {
            return Err(DataError::NoClassFolders(dir.to_path_buf()));
        }
        classes.sort();

        let mut images = Vec::new();
        let mut labels = Vec::new();
        let mut class_names = Vec::with_capacity(classes.len());
        for (label, (name, class_dir)) in classes.into_iter().enumerate() {
            let mut files: Vec<PathBuf> = list_dir(&class_dir)?
                .into_iter()
                .filter(|(name, path)| !name.starts_with('.') && has_image_extension(name) && path.is_file())
                .map(|(_, path)| path)
                .collect();
            if files.is_empty() {
                return Err(DataError::EmptyClass(class_dir));
            }
            files.sort();
            for file in files {
                let img = read_image(&file)?;
                images.extend(image_to_chw(&img, size, channels));
                labels.push(label as u32);
            }
            class_names.push(name);
        }
        Dataset::new(channels, size, images, labels, class_names)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image: `channels * size * size`.
    pub fn image_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// Number of classes (`class_names.len()`, including classes with no image in this set).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Image `i` as `[C, H, W]`. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Label of image `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }

    /// The images at `indices` (in that order), keeping the class list.
    /// Panics if an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        let mut labels = Vec::with_capacity(indices.len());
        let mut text = self.text.as_ref().map(|t| Text { contexts: Vec::with_capacity(indices.len() * t.len()), tokens: t.tokens, dim: t.dim, empty: t.empty.clone() });
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
            if let (Some(sub), Some(t)) = (text.as_mut(), &self.text) {
                sub.contexts.extend_from_slice(&t.contexts[i * t.len()..(i + 1) * t.len()]);
            }
        }
        Dataset { channels: self.channels, size: self.size, images, labels, class_names: self.class_names.clone(), text }
    }

    /// Deterministic stratified split into `(train, eval)`.
    ///
    /// For each class with `n` images, a seeded shuffle (SplitMix64 + Fisher-Yates) picks
    /// `round(n * eval_fraction)` of them for eval. Both halves keep the original order and the
    /// full class list, so the result depends only on the data, the fraction and the seed.
    /// `eval_fraction` is clamped to `[0, 1]` (NaN counts as 0).
    pub fn split(&self, eval_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let frac = if eval_fraction.is_nan() { 0.0 } else { eval_fraction.clamp(0.0, 1.0) };
        let mut is_eval = vec![false; self.len()];
        for class in 0..self.num_classes() as u32 {
            let mut members: Vec<usize> = (0..self.len()).filter(|&i| self.labels[i] == class).collect();
            let take = (members.len() as f64 * frac).round() as usize;
            let mut rng = SplitMix64::new(seed ^ (u64::from(class)).wrapping_mul(mvdit_core::rng::GAMMA));
            // Partial Fisher-Yates: the first `take` slots end up a uniform random sample.
            for k in 0..take.min(members.len()) {
                let j = k + rng.below((members.len() - k) as u64) as usize;
                members.swap(k, j);
                is_eval[members[k]] = true;
            }
        }
        let train: Vec<usize> = (0..self.len()).filter(|&i| !is_eval[i]).collect();
        let eval: Vec<usize> = (0..self.len()).filter(|&i| is_eval[i]).collect();
        (self.subset(&train), self.subset(&eval))
    }
}

fn check_channels(channels: usize) -> Result<(), DataError> {
    if channels == 1 || channels == 3 {
        Ok(())
    } else {
        Err(DataError::Config(format!("channels must be 1 (grey) or 3 (RGB), got {channels}")))
    }
}

fn check_size(size: usize) -> Result<(), DataError> {
    if (1..=MAX_IMAGE_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(DataError::Config(format!("image size must be in 1..={MAX_IMAGE_SIZE}, got {size}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageBuffer, Luma, Rgb};

    #[test]
    fn digits_native() {
        let d = Dataset::digits(8, 1).unwrap();
        assert_eq!(d.len(), 1797);
        assert_eq!((d.channels, d.size, d.image_len()), (1, 8, 64));
        assert_eq!(d.images.len(), 1797 * 64);
        assert_eq!(d.class_names, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
        let mut counts = [0usize; 10];
        for &l in &d.labels {
            counts[l as usize] += 1;
        }
        // Known class sizes of the sklearn digits set.
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        let (lo, hi) = d.images.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert_eq!((lo, hi), (-1.0, 1.0));
        // Every value is a multiple of 1/8 (0..=16 mapped by v/8 - 1).
        assert!(d.images.iter().all(|v| ((v + 1.0) * 8.0).fract() == 0.0));
        // First row of the CSV: "0,0,5,13,9,1,0,0,..." label 0.
        assert_eq!(d.label(0), 0);
        assert_eq!(&d.image(0)[..4], &[-1.0, -1.0, 5.0 / 8.0 - 1.0, 13.0 / 8.0 - 1.0]);
        assert_eq!(d.label(1), 1);
        // Corners are background in the first image.
        assert_eq!(d.image(0)[0], -1.0);
    }

    #[test]
    fn digits_upsampled_16() {
        let d8 = Dataset::digits(8, 1).unwrap();
        let d16 = Dataset::digits(16, 1).unwrap();
        assert_eq!(d16.len(), 1797);
        assert_eq!(d16.image_len(), 256);
        assert_eq!(d16.labels, d8.labels);
        assert!(d16.images.iter().all(|v| (-1.0..=1.0).contains(v)));
        // Bilinear with half-pixel centres: the 2x2 block mean of the 16x16 image is a smoothed
        // version of the source, and the mean over the whole image is preserved up to edges.
        for i in [0, 100, 1796] {
            let a: f32 = d8.image(i).iter().sum::<f32>() / 64.0;
            let b: f32 = d16.image(i).iter().sum::<f32>() / 256.0;
            assert!((a - b).abs() < 0.05, "image {i}: mean {a} vs {b}");
        }
        let d3 = Dataset::digits(16, 3).unwrap();
        assert_eq!(d3.image_len(), 768);
        let img = d3.image(5);
        assert_eq!(&img[..256], &img[256..512]);
        assert_eq!(&img[..256], d16.image(5));
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(matches!(Dataset::digits(8, 2), Err(DataError::Config(_))));
        assert!(matches!(Dataset::digits(0, 1), Err(DataError::Config(_))));
        assert!(matches!(Dataset::new(1, 2, vec![0.0; 3], vec![0], vec!["a".into()]), Err(DataError::Config(_))));
        assert!(matches!(Dataset::new(1, 1, vec![0.0], vec![1], vec!["a".into()]), Err(DataError::Config(_))));
    }

    #[test]
    fn split_is_deterministic_stratified_and_disjoint() {
        let d = Dataset::digits(8, 1).unwrap();
        let (tr, ev) = d.split(0.1, 42);
        assert_eq!(tr.len() + ev.len(), 1797);
        // Per class round(n * 0.1): 18,18,18,18,18,18,18,18,17,18.
        assert_eq!(ev.len(), 179);
        assert_eq!(tr.len(), 1618);
        for c in 0..10u32 {
            let n = d.labels.iter().filter(|&&l| l == c).count();
            let e = ev.labels.iter().filter(|&&l| l == c).count();
            assert_eq!(e, (n as f64 * 0.1).round() as usize, "class {c}");
        }
        assert_eq!(tr.class_names, d.class_names);
        assert_eq!(ev.class_names, d.class_names);
        let (tr2, ev2) = d.split(0.1, 42);
        assert_eq!(tr, tr2);
        assert_eq!(ev, ev2);
        let (_, ev3) = d.split(0.1, 7);
        assert_eq!(ev3.len(), 179);
        assert_ne!(ev.images, ev3.images);
        // Disjoint and complete: rebuild the multiset of (image, label) pairs.
        let key = |ds: &Dataset, i: usize| (ds.image(i).iter().map(|v| v.to_bits()).collect::<Vec<_>>(), ds.label(i));
        let mut all: Vec<_> = (0..d.len()).map(|i| key(&d, i)).collect();
        let mut parts: Vec<_> = (0..tr.len()).map(|i| key(&tr, i)).chain((0..ev.len()).map(|i| key(&ev, i))).collect();
        all.sort();
        parts.sort();
        assert_eq!(all, parts);
        // Edge fractions.
        assert_eq!(d.split(0.0, 1).1.len(), 0);
        assert_eq!(d.split(1.0, 1).0.len(), 0);
        assert_eq!(d.split(f64::NAN, 1).0.len(), 1797);
    }

    /// `root/<class>/<i>.png` with generated content.
    fn write_class(root: &Path, class: &str, count: usize, shade: u8) {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..count {
            let img = ImageBuffer::from_fn(12, 12, |x, _| Rgb([shade, (x * 20) as u8, 255 - shade]));
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }

    #[test]
    fn folder_loading() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write_class(root, "cat", 3, 0);
        write_class(root, "apple", 2, 255);
        // A JPEG with upper-case extension, a non-image file and a hidden folder are fine.
        let grey = ImageBuffer::from_pixel(20, 10, Luma([128u8]));
        DynamicImage::ImageLuma8(grey).to_rgb8().save(root.join("cat").join("x.JPG")).unwrap();
        std::fs::write(root.join("cat").join("notes.txt"), "hi").unwrap();
        std::fs::create_dir_all(root.join(".cache")).unwrap();
        std::fs::write(root.join("README"), "top-level file ignored").unwrap();

        let d = Dataset::from_folder(root, 8, 3).unwrap();
        assert_eq!(d.class_names, vec!["apple".to_string(), "cat".to_string()]);
        assert_eq!(d.labels, vec![0, 0, 1, 1, 1, 1]);
        assert_eq!((d.channels, d.size, d.image_len()), (3, 8, 192));
        assert!(d.images.iter().all(|v| (-1.0..=1.0).contains(v)));
        // "apple": red channel 255 -> 1.0, blue 0 -> -1.0 everywhere.
        let a = d.image(0);
        assert!(a[..64].iter().all(|&v| v == 1.0));
        assert!(a[128..].iter().all(|&v| v == -1.0));
        // The JPEG is read last in "cat" (0.png 1.png 2.png x.JPG) and is mid grey.
        let j = d.image(5);
        assert!(j.iter().all(|&v| v.abs() < 0.05), "{j:?}");

        let g = Dataset::from_folder(root, 16, 1).unwrap();
        assert_eq!((g.channels, g.size, g.len()), (1, 16, 6));
        assert!(g.images.iter().all(|v| (-1.0..=1.0).contains(v)));

        let (tr, ev) = d.split(0.5, 3);
        assert_eq!((tr.len(), ev.len()), (3, 3)); // apple 1 of 2, cat 2 of 4
    }

    #[test]
    fn folder_errors_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();

        let missing = root.join("nope");
        let e = Dataset::from_folder(&missing, 8, 1).unwrap_err();
        assert!(matches!(&e, DataError::MissingFolder(p) if p == &missing));
        assert!(e.to_string().contains("nope"));

        let file = root.join("file.png");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(Dataset::from_folder(&file, 8, 1), Err(DataError::NotAFolder(_))));

        let empty = root.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let e = Dataset::from_folder(&empty, 8, 1).unwrap_err();
        assert!(matches!(&e, DataError::NoClassFolders(p) if p == &empty), "{e}");

        let ds = root.join("ds");
        write_class(&ds, "a", 1, 10);
        std::fs::create_dir_all(ds.join("b")).unwrap();
        std::fs::write(ds.join("b").join("readme.txt"), "no images").unwrap();
        let e = Dataset::from_folder(&ds, 8, 1).unwrap_err();
        assert!(matches!(&e, DataError::EmptyClass(p) if p == &ds.join("b")), "{e}");
        assert!(e.to_string().contains("contains no .png"));

        std::fs::write(ds.join("b").join("broken.png"), b"this is not a png").unwrap();
        let e = Dataset::from_folder(&ds, 8, 1).unwrap_err();
        assert!(matches!(&e, DataError::Image { path, .. } if path == &ds.join("b").join("broken.png")), "{e}");
        assert!(e.to_string().contains("broken.png"));
        assert!(std::error::Error::source(&e).is_some());

        assert!(matches!(Dataset::from_folder(&ds, 8, 4), Err(DataError::Config(_))));
    }

    #[test]
    fn load_dispatches() {
        assert_eq!(Dataset::load(&DataSource::Digits, 8, 1).unwrap().len(), DIGITS_LEN);
        assert!(matches!(Dataset::load(&DataSource::Folder("/definitely/not/here".into()), 8, 1), Err(DataError::MissingFolder(_))));
        assert!(DIGITS_CREDIT.contains("CC BY 4.0"));
    }
}
