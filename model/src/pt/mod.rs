//! PyTorch checkpoints (`torch.save`d state dicts, like the released `model.pt`) read safely
//! through a memory map: the zip archive's directory ([`archive`]), a restricted unpickler that
//! never imports or runs anything ([`pickle`]), and the state dict's tensors located in their
//! stored storages ([`state_dict`]). Reading a tensor slices the mapped file, so peak memory is
//! about one tensor, whatever the checkpoint's size. Errors name the file and the tensor.

pub mod archive;
pub mod objects;
pub mod pickle;
pub mod state_dict;

pub use state_dict::PtTensor;

use crate::error::{Error, Result};
use crate::tensorfile::{HostTensor, TensorFile};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::path::Path;

/// The bytes a [`PtFile`] reads: a mapped file, or a buffer (tests, fuzzing).
enum Backing {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// Whether a file starting with `head` (its first 9 bytes or more) is a PyTorch checkpoint: a
/// zip archive (a local file header or, for an empty one, the end record), or a legacy
/// (torch < 1.6) pickle. A safetensors file never is: its ninth byte opens the JSON header.
pub fn looks_like_pt(head: &[u8]) -> bool {
    let zip = head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06");
    (zip || head.starts_with(&[0x80, 0x02, 0x8a])) && head.get(8) != Some(&b'{')
}

/// Whether the file at `path` is a PyTorch checkpoint, judged by [`looks_like_pt`].
pub fn is_pt_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::with_capacity(9);
    std::fs::File::open(path).and_then(|f| f.take(9).read_to_end(&mut head)).is_ok() && looks_like_pt(&head)
}

/// The tensors of the state dict in checkpoint `bytes`, each with its byte range in `bytes`.
pub fn index(bytes: &[u8]) -> Result<BTreeMap<String, PtTensor>> {
    let archive = archive::Archive::read(bytes)?;
    let pkl = archive.get("data.pkl", bytes)?;
    let p = pickle::parse(pkl).map_err(|e| e.context("data.pkl"))?;
    state_dict::tensors(&p, &archive)
}

/// A `torch.save`d state dict: its tensors, readable one at a time.
pub struct PtFile {
    data: Backing,
    tensors: BTreeMap<String, PtTensor>,
    /// What to call this file in messages.
    origin: String,
}

impl PtFile {
    /// Maps and indexes the checkpoint at `path`; nothing of the tensors is read yet.
    pub fn open(path: &Path) -> Result<Self> {
        let at = |e: String| Error::new(format!("{}: {e}", path.display()));
        let f = std::fs::File::open(path).map_err(|e| at(format!("cannot open: {e}")))?;
        let len = f.metadata().map_err(|e| at(format!("cannot stat: {e}")))?.len();
        if len == 0 {
            return Err(at("empty file, not a PyTorch checkpoint".into()));
        }
        // SAFETY: the map is read-only; a file changed underneath us while mapped is the user's
        // error, as for any reader of a file that another process truncates.
        let map = unsafe { Mmap::map(&f) }.map_err(|e| at(format!("cannot map: {e}")))?;
        // Indexing reads each entry's local header, which torch writes just before the
        // entry's data: with the kernel's read-around, one touch per tensor read the whole
        // file (twice in all once it outgrows the page cache). No read-around while indexing.
        crate::mapped::advise_random(&map, true);
        let pt = Self::index(Backing::Map(map), path.display().to_string());
        if let Ok(PtFile { data: Backing::Map(m), .. }) = &pt {
            crate::mapped::advise_random(m, false);
        }
        pt
    }

    /// A checkpoint held in memory; `origin` names it in messages.
    pub fn from_bytes(bytes: Vec<u8>, origin: &str) -> Result<Self> {
        Self::index(Backing::Owned(bytes), origin.to_string())
    }

    fn index(data: Backing, origin: String) -> Result<Self> {
        let tensors = index(&data).map_err(|e| e.context(&origin))?;
        Ok(PtFile { data, tensors, origin })
    }

    /// The file these tensors come from, for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|s| s.as_str())
    }

    pub fn tensors(&self) -> &BTreeMap<String, PtTensor> {
        &self.tensors
    }

    /// Tensor `name`'s entry.
    pub fn info(&self, name: &str) -> Result<&PtTensor> {
        self.tensors.get(name).ok_or_else(|| Error::new(format!("{}: missing tensor `{name}`", self.origin)))
    }

    /// Tensor `name`'s raw little-endian bytes, a slice of the mapped file.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        Ok(&self.data[self.info(name)?.bytes.clone()])
    }

    /// Tells the system that this process is done with tensor `name`'s pages of the mapped file
    /// (they stay in the page cache, and are read again if the tensor is), so reading a model
    /// larger than memory tensor by tensor does not keep every page resident. No effect on a
    /// buffer or off Unix.
    pub fn done_with(&self, name: &str) {
        if let (Backing::Map(m), Some(t)) = (&self.data, self.tensors.get(name)) {
            crate::mapped::release(m, t.bytes.clone());
        }
    }

    /// Tensor `name` decoded to f32, checked to have finite values.
    pub fn get(&self, name: &str) -> Result<HostTensor> {
        let t = self.info(name)?;
        let data = crate::mapped::decode_finite(&self.data[t.bytes.clone()], t.dtype, &self.origin, name)?;
        Ok(HostTensor::new(t.shape.clone(), data))
    }

    /// Every tensor decoded to f32, as a [`TensorFile`] without metadata (a `.pt` has no config).
    pub fn to_tensor_file(&self) -> Result<TensorFile> {
        let mut file = TensorFile::default();
        for name in self.tensors.keys() {
            file.insert(name.clone(), self.get(name)?);
            self.done_with(name);
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_pt_from_a_safetensors_file_by_its_first_bytes() {
        assert!(looks_like_pt(b"PK\x03\x04\x14\x00\x00\x08\x00\x00"));
        assert!(looks_like_pt(b"PK\x05\x06\x00\x00\x00\x00\x00\x00"));
        assert!(looks_like_pt(&[0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9]));
        // a safetensors header of 0x04034b50 bytes would start like a zip; its JSON tells it apart
        assert!(!looks_like_pt(b"PK\x03\x04\x00\x00\x00\x00{\"a\""));
        assert!(!looks_like_pt(b"\x50\x4b\x00\x00\x00\x00\x00\x00{\"a\""));
        assert!(!looks_like_pt(b""));
    }
}
