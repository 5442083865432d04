//! [`DataError`]: what can go wrong while loading a data set, naming the file or folder.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while loading a dataset. Every variant that concerns a file
/// or folder names it.
#[derive(Debug)]
pub enum DataError {
    /// The dataset folder does not exist.
    MissingFolder(PathBuf),
    /// The path exists but is not a folder.
    NotAFolder(PathBuf),
    /// The dataset folder has no class sub-folders.
    NoClassFolders(PathBuf),
    /// A class sub-folder holds no PNG/JPEG file.
    EmptyClass(PathBuf),
    /// Listing a folder or reading a file failed.
    Io { path: PathBuf, source: std::io::Error },
    /// A file could not be decoded as an image.
    Image { path: PathBuf, source: image::ImageError },
    /// The embedded digits data is malformed (should never happen).
    Digits(String),
    /// Bad loader arguments (channels not 1 or 3, size out of range, inconsistent buffers).
    Config(String),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::MissingFolder(p) => write!(f, "dataset folder {} does not exist", p.display()),
            DataError::NotAFolder(p) => write!(f, "dataset path {} is not a folder", p.display()),
            DataError::NoClassFolders(p) => {
                write!(f, "dataset folder {} has no class sub-folders (expected one sub-folder of PNG/JPEG images per class)", p.display())
            }
            DataError::EmptyClass(p) => {
                write!(f, "class folder {} contains no .png/.jpg/.jpeg images", p.display())
            }
            DataError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            DataError::Image { path, source } => {
                write!(f, "cannot decode image {}: {source}", path.display())
            }
            DataError::Digits(m) => write!(f, "bundled digits data is malformed: {m}"),
            DataError::Config(m) => write!(f, "invalid dataset settings: {m}"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } => Some(source),
            DataError::Image { source, .. } => Some(source),
            _ => None,
        }
    }
}
