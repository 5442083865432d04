//! Reading and writing named f32 tensors as safetensors, with errors naming the file and tensor.
//! Writes go to a temporary file that is synced and renamed, so a crash never leaves half a file.

use crate::checksum::{self, TENSORS_KEY};
use crate::error::{Error, Result};
use mvdit_core::dtype::{decode_le, Dtype};
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// Metadata key of the CRC-32 over every tensor (see [`crate::checksum`]).
pub use crate::checksum::FILE_KEY as CHECKSUM_KEY;

/// Each tensor's CRC (name order) and their combination, the file's.
fn checksums(tensors: &BTreeMap<String, HostTensor>) -> (Vec<crc32fast::Hasher>, u32) {
    let parts: Vec<crc32fast::Hasher> = tensors.iter().map(|(n, t)| checksum::of_values(n, &t.shape, &t.data)).collect();
    let file = checksum::combine(&parts);
    (parts, file)
}

/// A host tensor: shape and f32 values.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor { shape, data }
    }
}

/// The tensors and string metadata of one safetensors file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorFile {
    pub tensors: BTreeMap<String, HostTensor>,
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::new(format!("{}: cannot read: {e}", path.display())))?;
        Self::from_bytes(&bytes).map_err(|e| e.context(path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::new(format!("not a valid safetensors file ({e})")))?;
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| Error::new(format!("bad safetensors header ({e})")))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            let dtype = match view.dtype() {
                StDtype::F32 => Dtype::F32,
                StDtype::F16 => Dtype::F16,
                StDtype::BF16 => Dtype::Bf16,
                other => return Err(Error::new(format!("tensor `{name}`: dtype {other:?} is not supported (use F32, F16 or BF16)"))),
            };
            let data = decode_le(view.data(), dtype);
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                return Err(Error::new(format!("tensor `{name}`: non-finite value {} at element {i}", data[i])));
            }
            tensors.insert(name.to_string(), HostTensor::new(view.shape().to_vec(), data));
        }
        let mut metadata = meta.metadata().clone().unwrap_or_default();
        let (file_sum, tensor_sums) = (metadata.remove(CHECKSUM_KEY), metadata.remove(TENSORS_KEY));
        if checksum::verifying() && (file_sum.is_some() || tensor_sums.is_some()) {
            let (parts, got) = checksums(&tensors);
            if let Some(list) = tensor_sums {
                let list = checksum::parse_tensors(&list)?;
                for ((name, _), part) in tensors.iter().zip(&parts) {
                    let stored = *list.get(name).ok_or_else(|| Error::new(format!("tensor `{name}` has no checksum in metadata `{TENSORS_KEY}`: the file is corrupt")))?;
                    if part.clone().finalize() != stored {
                        return Err(checksum::mismatch(name, stored, part.clone().finalize()));
                    }
                }
            }
            if let Some(want) = file_sum.filter(|w| *w != checksum::hex(got)) {
                return Err(Error::new(format!("checksum mismatch (stored {want}, computed {}): the file is corrupt", checksum::hex(got))));
            }
        }
        Ok(TensorFile { tensors, metadata })
    }

    /// The tensor `name` with exactly `shape` (`None` entries match any size).
    pub fn expect(&self, name: &str, shape: &[Option<usize>]) -> Result<&HostTensor> {
        let t = self.tensors.get(name).ok_or_else(|| Error::new(format!("missing tensor `{name}`")))?;
        let fits = t.shape.len() == shape.len() && t.shape.iter().zip(shape).all(|(a, b)| b.is_none_or(|b| *a == b));
        if !fits {
            let want: Vec<String> = shape.iter().map(|s| s.map_or("?".into(), |v| v.to_string())).collect();
            return Err(Error::new(format!("tensor `{name}` has shape {:?}, expected [{}]", t.shape, want.join(", "))));
        }
        Ok(t)
    }

    pub fn insert(&mut self, name: impl Into<String>, t: HostTensor) {
        self.tensors.insert(name.into(), t);
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let raw: Vec<(String, Vec<usize>, Vec<u8>)> =
            self.tensors.iter().map(|(n, t)| (n.clone(), t.shape.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect())).collect();
        let mut views = Vec::with_capacity(raw.len());
        for (n, shape, bytes) in &raw {
            let v = TensorView::new(StDtype::F32, shape.clone(), bytes).map_err(|e| Error::new(format!("tensor `{n}`: {e}")))?;
            views.push((n.clone(), v));
        }
        let mut meta = self.metadata.clone();
        let (parts, file) = checksums(&self.tensors);
        meta.insert(CHECKSUM_KEY.to_string(), checksum::hex(file));
        meta.insert(TENSORS_KEY.to_string(), checksum::tensors_value(self.tensors.keys().map(String::as_str).zip(parts.iter().map(|p| p.clone().finalize()))));
        safetensors::serialize(views, Some(meta)).map_err(|e| Error::new(format!("cannot serialise tensors: {e}")))
    }

    /// Writes atomically: temp file in the same folder, fsync, rename.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }
}

/// The temporary file [`write_atomic`] writes file `name` through in process `pid`.
pub(crate) fn partial_name(name: &str, pid: u32) -> String {
    format!(".{name}.tmp{pid}")
}

/// The file that `file_name` was being written as, if it is the temporary file of a
/// [`write_atomic`] that never finished (its process was killed): `.NAME.tmpPID` → `NAME`.
pub fn interrupted_write(file_name: &str) -> Option<&str> {
    let (target, pid) = file_name.strip_prefix('.')?.rsplit_once(".tmp")?;
    (!target.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then_some(target)
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::new(format!("{}: cannot create temporary file: {e}", path.display())))?;
        f.write_all(bytes).map_err(|e| Error::new(format!("{}: cannot write: {e}", path.display())))
    })
}

/// Writes `path` through its temporary file: `fill` writes the temporary file (named by
/// [`interrupted_write`]'s rule), which is then synced and renamed into place. On any error the
/// temporary file is removed and `path` is left as it was.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let err = |what: &str, e: std::io::Error| Error::new(format!("{}: cannot {what}: {e}", path.display()));
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::new(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(partial_name(&name.to_string_lossy(), std::process::id()));
    let result = (|| {
        fill(&tmp)?;
        let f = std::fs::OpenOptions::new().write(true).open(&tmp).map_err(|e| err("reopen temporary file", e))?;
        f.sync_all().map_err(|e| err("sync", e))?;
        std::fs::rename(&tmp, path).map_err(|e| err("rename into place", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_writes_are_recognised_by_their_temporary_name() {
        let tmp = partial_name("step-00000003.safetensors", 4242);
        assert_eq!(interrupted_write(&tmp), Some("step-00000003.safetensors"));
        for other in ["step-00000003.safetensors", ".notes", ".x.tmp", ".x.tmpabc", "..tmp12"] {
            assert_eq!(interrupted_write(other), None, "{other}");
        }
    }

    #[test]
    fn round_trips_tensors_and_metadata() {
        let mut f = TensorFile::default();
        f.insert("a.b", HostTensor::new(vec![2, 3], (0..6).map(|v| v as f32 * 0.5).collect()));
        f.metadata.insert("config".into(), "{}".into());
        let back = TensorFile::from_bytes(&f.to_bytes().unwrap()).unwrap();
        assert_eq!(back, f);
        assert!(back.expect("a.b", &[Some(2), None]).is_ok());
        let e = back.expect("a.b", &[Some(3), Some(2)]).unwrap_err();
        assert!(e.0.contains("`a.b`") && e.0.contains("[3, 2]"), "{e}");
        assert!(back.expect("zz", &[]).unwrap_err().0.contains("missing tensor `zz`"));
    }

    #[test]
    fn rejects_garbage_and_truncation_with_a_message() {
        assert!(TensorFile::from_bytes(b"nonsense").is_err());
        let mut f = TensorFile::default();
        f.insert("x", HostTensor::new(vec![4], vec![1.0; 4]));
        let bytes = f.to_bytes().unwrap();
        assert!(TensorFile::from_bytes(&bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn a_flipped_bit_in_the_data_fails_the_checksum_naming_the_tensor() {
        let mut f = TensorFile::default();
        f.insert("a", HostTensor::new(vec![2], vec![1.0, 2.0]));
        f.insert("w", HostTensor::new(vec![8], (0..8).map(|v| v as f32).collect()));
        let mut bytes = f.to_bytes().unwrap();
        let n = bytes.len();
        bytes[n - 5] ^= 0x01;
        let e = TensorFile::from_bytes(&bytes).unwrap_err();
        assert!(e.0.starts_with("tensor `w`: checksum mismatch"), "{e}");
        // A file that lost its per-tensor list is still checked as a whole.
        let mut g = TensorFile::from_bytes(&f.to_bytes().unwrap()).unwrap();
        g.metadata.insert(CHECKSUM_KEY.into(), "12345678".into());
        let views: Vec<(String, TensorView)> = Vec::new();
        let stale = safetensors::serialize(views, Some(g.metadata.clone())).unwrap();
        assert!(TensorFile::from_bytes(&stale).unwrap_err().0.contains("checksum mismatch (stored 12345678"));
    }

    #[test]
    fn rejects_non_finite_values_naming_the_tensor() {
        let mut f = TensorFile::default();
        f.insert("bad", HostTensor::new(vec![2], vec![1.0, f32::NAN]));
        let e = TensorFile::from_bytes(&f.to_bytes().unwrap()).unwrap_err();
        assert!(e.0.contains("`bad`"), "{e}");
    }
}
