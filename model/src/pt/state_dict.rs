//! From an unpickled object graph to the state dict's tensors: the nesting that the official
//! `sample.py` accepts (the dict itself, or its value under `model`, else under `state_dict`),
//! then each entry checked to be a contiguous F32/F16/BF16 tensor whose storage holds it.

use super::archive::Archive;
use super::objects::{Id, Pickle, StorageDtype, Value};
use crate::error::{Error, Result};
use mvdit_core::dtype::Dtype;
use std::collections::BTreeMap;
use std::ops::Range;

/// One tensor of a `.pt` state dict and where its bytes lie.
#[derive(Clone, Debug, PartialEq)]
pub struct PtTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
    /// The archive entry of its storage (`<prefix>/data/<key>`).
    pub storage: String,
    /// Offset into the storage, in elements.
    pub offset: usize,
    /// The tensor's bytes in the file (little-endian, row-major).
    pub bytes: Range<usize>,
}

impl PtTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The items of the dict at `id` (a later equal key wins), keys that are strings only.
fn dict_items<'p>(p: &'p Pickle, id: Id, what: &str) -> Result<Vec<(&'p str, Id)>> {
    let Value::Dict(pairs) = p.get(id) else {
        return Err(Error::new(format!("{what} is a {}, not a dict: not a state dict", p.get(id).kind())));
    };
    let mut out: Vec<(&str, Id)> = Vec::with_capacity(pairs.len());
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for &(k, v) in pairs {
        let key = p.str(k).ok_or_else(|| Error::new(format!("{what} has a key that is a {}, not a string", p.get(k).kind())))?;
        match seen.get(key) {
            Some(&i) => out[i].1 = v,
            None => {
                seen.insert(key, out.len());
                out.push((key, v));
            }
        }
    }
    Ok(out)
}

/// The state dict: the top-level dict, or its `model` / `state_dict` entry (in that order).
fn state_dict_id(p: &Pickle) -> Result<(Id, &'static str)> {
    let top = dict_items(p, p.root, "the checkpoint")?;
    for key in ["model", "state_dict"] {
        if let Some(&(_, id)) = top.iter().find(|(k, _)| *k == key) {
            return Ok((id, if key == "model" { "entry `model`" } else { "entry `state_dict`" }));
        }
    }
    Ok((p.root, "the checkpoint"))
}

/// Whether `stride` is the row-major stride of `shape` (size-1 dimensions may have any stride).
fn contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut want = 1usize;
    for (&n, &s) in shape.iter().zip(stride).rev() {
        if n != 1 && s != want {
            return false;
        }
        want = want.saturating_mul(n);
    }
    true
}

fn to_usize(v: &[u64], what: impl Fn() -> String) -> Result<Vec<usize>> {
    v.iter().map(|&x| usize::try_from(x).map_err(|_| Error::new(format!("{}: {x} is too large", what())))).collect()
}

/// Every tensor of the state dict, checked against the archive's storages.
pub fn tensors(p: &Pickle, archive: &Archive) -> Result<BTreeMap<String, PtTensor>> {
    let (sd, what) = state_dict_id(p)?;
    let mut out = BTreeMap::new();
    for (name, id) in dict_items(p, sd, what)? {
        let at = |msg: String| Error::new(format!("tensor `{name}`: {msg}"));
        let Value::Tensor(t) = p.get(id) else {
            return Err(Error::new(format!("{what}: `{name}` is a {}, not a tensor", p.get(id).kind())));
        };
        let Value::Storage(s) = p.get(t.storage) else {
            return Err(at("its storage is not a storage".into()));
        };
        let dtype = match s.dtype {
            StorageDtype::F32 => Dtype::F32,
            StorageDtype::F16 => Dtype::F16,
            StorageDtype::Bf16 => Dtype::Bf16,
            StorageDtype::Other(d) => return Err(at(format!("dtype {d} is not supported (float32, float16 or bfloat16)"))),
        };
        let shape = to_usize(&t.shape, || format!("tensor `{name}`: a size"))?;
        let stride = to_usize(&t.stride, || format!("tensor `{name}`: a stride"))?;
        let numel = shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).ok_or_else(|| at(format!("shape {shape:?} has too many elements")))?;
        if numel > 0 && !contiguous(&shape, &stride) {
            return Err(at(format!("not contiguous (shape {shape:?}, stride {stride:?}); save it with .contiguous()")));
        }
        let (storage, range) = archive.entry(&format!("data/{}", s.key)).map_err(|e| at(format!("storage `{}`: {e}", s.key)))?;
        let esize = dtype.size();
        let short = || at(format!("storage shorter than its tensor (storage `{}` holds {} bytes, the tensor needs {numel} elements of {esize} bytes from element {})", s.key, range.len(), t.offset));
        let end_elems = t.offset.checked_add(numel as u64).ok_or_else(short)?;
        let end_bytes = end_elems.checked_mul(esize as u64).filter(|&b| b <= range.len() as u64 && end_elems <= s.numel).ok_or_else(short)?;
        let offset = t.offset as usize; // ≤ end_bytes ≤ range.len()
        let bytes = range.start + offset * esize..range.start + end_bytes as usize;
        out.insert(name.to_string(), PtTensor { dtype, shape, stride, storage, offset, bytes });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_ignores_size_one_dimensions() {
        assert!(contiguous(&[2, 3], &[3, 1]));
        assert!(contiguous(&[2, 1, 3], &[3, 99, 1]));
        assert!(contiguous(&[], &[]));
        assert!(!contiguous(&[2, 3], &[1, 2]));
        assert!(!contiguous(&[4], &[2]));
    }
}
