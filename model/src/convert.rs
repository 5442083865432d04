//! A PyTorch state dict (`.pt`) → an mvdit checkpoint (safetensors, the config as JSON in
//! metadata key `config`), one tensor at a time: each tensor is handed to the safetensors
//! writer as a view of the mapped `.pt` (converted to the output dtype when asked), so the
//! whole model is never in memory. The layout is checked first, so a bad file writes nothing.

use crate::checkpoint::STATE_PREFIXES;
use crate::error::{Error, Result};
use crate::pt::PtFile;
use crate::tensorfile::write_atomic_with;
use mvdit_core::dtype::{decode_le, encode_le, Dtype};
use mvdit_core::params::is_constant_ones_buffer;
use mvdit_core::{Layout, ModelConfig};
use safetensors::tensor::{Dtype as StDtype, View};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

/// What a conversion wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    pub tensors: usize,
    /// Constant all-ones buffers of the release that were checked and left out.
    pub dropped_ones: usize,
    pub bytes: u64,
}

/// The names of `cfg`'s parameters in `pt`, in [`Layout`] order, after checking that every one
/// is present with its shape. The released model's constant gains (all ones, loaded with
/// `strict=False` upstream) are checked to be ones and counted; any other tensor is an error.
pub fn check_layout(pt: &PtFile, cfg: &ModelConfig) -> Result<(Vec<String>, usize)> {
    let at = |msg: String| Error::new(format!("{}: {msg}", pt.origin()));
    let layout = Layout::new(cfg);
    let mut names = Vec::with_capacity(layout.specs.len());
    for spec in &layout.specs {
        let t = pt.tensors().get(&spec.name).ok_or_else(|| at(format!("missing tensor `{}` (shape {:?})", spec.name, spec.shape)))?;
        if t.shape != spec.shape {
            return Err(at(format!("tensor `{}` has shape {:?}, the config needs {:?}", spec.name, t.shape, spec.shape)));
        }
        names.push(spec.name.clone());
    }
    let mut ones = 0;
    for name in pt.names().filter(|n| layout.index_of(n).is_none()) {
        if is_constant_ones_buffer(name, cfg) {
            let t = pt.info(name)?;
            if !all_ones(pt.bytes(name)?, t.dtype) {
                return Err(at(format!("tensor `{name}` is a fixed gain in this config and must be all ones")));
            }
            pt.done_with(name);
            ones += 1;
        } else if STATE_PREFIXES.iter().any(|p| name.starts_with(p)) {
            return Err(at(format!("tensor `{name}` is training state, which a state dict import does not carry")));
        } else {
            return Err(at(format!("unknown tensor `{name}` for this config")));
        }
    }
    Ok((names, ones))
}

fn st_dtype(d: Dtype) -> StDtype {
    match d {
        Dtype::F32 => StDtype::F32,
        Dtype::F16 => StDtype::F16,
        Dtype::Bf16 => StDtype::BF16,
    }
}

/// Whether every element of little-endian `bytes` of `dtype` is exactly 1 (read in place).
fn all_ones(bytes: &[u8], dtype: Dtype) -> bool {
    let one = encode_le(&[1.0], dtype);
    bytes.chunks_exact(one.len()).all(|c| c == one.as_slice())
}

/// The first element of little-endian `bytes` of `dtype` that is not finite.
fn first_non_finite(bytes: &[u8], dtype: Dtype) -> Option<usize> {
    match dtype {
        Dtype::F32 => bytes.chunks_exact(4).position(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x7f80_0000 == 0x7f80_0000),
        Dtype::F16 => bytes.chunks_exact(2).position(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7c00 == 0x7c00),
        Dtype::Bf16 => bytes.chunks_exact(2).position(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7f80 == 0x7f80),
    }
}

/// One tensor, read when the writer asks for its bytes.
struct Lazy<'a> {
    pt: &'a PtFile,
    name: &'a str,
    src: Dtype,
    dst: Dtype,
    shape: Vec<usize>,
    bytes: &'a [u8],
    /// The first problem met while writing (a non-finite value), reported after the write.
    problem: &'a RefCell<Option<String>>,
    /// The tensor whose pages the previous `data()` lent out, released at the next one.
    lent: &'a RefCell<Option<&'a str>>,
}

impl View for Lazy<'_> {
    fn dtype(&self) -> StDtype {
        st_dtype(self.dst)
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dst.size()
    }
    fn data(&self) -> Cow<'_, [u8]> {
        if let Some(prev) = self.lent.borrow_mut().take() {
            self.pt.done_with(prev);
        }
        let out: Cow<'_, [u8]> = if self.src == self.dst {
            *self.lent.borrow_mut() = Some(self.name);
            Cow::Borrowed(self.bytes)
        } else {
            let v = encode_le(&decode_le(self.bytes, self.src), self.dst);
            self.pt.done_with(self.name);
            Cow::Owned(v)
        };
        if let Some(i) = first_non_finite(&out, self.dst) {
            let mut p = self.problem.borrow_mut();
            if p.is_none() {
                *p = Some(format!("tensor `{}` has a non-finite value at element {i} (as {:?})", self.name, self.dst));
            }
        }
        out
    }
}

/// Writes tensors `names` of `pt` to `out` as safetensors, each in `dtype` (default: as
/// stored), with `cfg` as JSON in metadata key `config`; atomically (temporary file, sync,
/// rename), and not at all when a value is not finite.
pub fn write_safetensors(pt: &PtFile, names: &[String], cfg: &ModelConfig, dtype: Option<Dtype>, out: &Path) -> Result<u64> {
    let problem = RefCell::new(None);
    let lent = RefCell::new(None);
    let mut views = Vec::with_capacity(names.len());
    for name in names {
        let info = pt.info(name)?;
        let bytes = pt.bytes(name)?;
        let (src, dst) = (info.dtype, dtype.unwrap_or(info.dtype));
        views.push((name.as_str(), Lazy { pt, name, src, dst, shape: info.shape.clone(), bytes, problem: &problem, lent: &lent }));
    }
    let total: u64 = views.iter().map(|(_, v)| v.data_len() as u64).sum();
    let json = serde_json::to_string(cfg).map_err(|e| Error::new(format!("cannot serialise config: {e}")))?;
    let meta = HashMap::from([("config".to_string(), json)]);
    write_atomic_with(out, |tmp| {
        let cannot = |e: &dyn std::fmt::Display| Error::new(format!("{}: cannot write: {e}", out.display()));
        // The writer renames its own private (0600) temporary file onto `tmp`: keep the
        // permissions an ordinary new file gets instead.
        let perms = std::fs::File::create(tmp).and_then(|f| f.metadata()).map_err(|e| cannot(&e))?.permissions();
        safetensors::serialize_to_file(views, Some(meta), tmp).map_err(|e| cannot(&e))?;
        std::fs::set_permissions(tmp, perms).map_err(|e| cannot(&e))?;
        match problem.borrow_mut().take() {
            Some(p) => Err(Error::new(format!("{}: {p}; nothing written", pt.origin()))),
            None => Ok(()),
        }
    })?;
    Ok(total)
}

/// [`check_layout`], then [`write_safetensors`].
pub fn convert_pt(pt: &PtFile, cfg: &ModelConfig, dtype: Option<Dtype>, out: &Path) -> Result<Converted> {
    let (names, dropped_ones) = check_layout(pt, cfg)?;
    let bytes = write_safetensors(pt, &names, cfg, dtype, out)?;
    Ok(Converted { tensors: names.len(), dropped_ones, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_non_finite_values_in_each_dtype() {
        for d in [Dtype::F32, Dtype::F16, Dtype::Bf16] {
            assert_eq!(first_non_finite(&encode_le(&[1.0, -2.0, 0.0], d), d), None, "{d:?}");
            assert_eq!(first_non_finite(&encode_le(&[1.0, f32::NAN], d), d), Some(1), "{d:?}");
            assert_eq!(first_non_finite(&encode_le(&[f32::NEG_INFINITY], d), d), Some(0), "{d:?}");
        }
        // beyond f16's range: infinite once converted
        assert_eq!(first_non_finite(&encode_le(&[1.0e6], Dtype::F16), Dtype::F16), Some(0));
    }

    #[test]
    fn recognises_all_ones_in_each_dtype() {
        for d in [Dtype::F32, Dtype::F16, Dtype::Bf16] {
            assert!(all_ones(&encode_le(&[1.0; 5], d), d), "{d:?}");
            assert!(all_ones(&[], d));
            assert!(!all_ones(&encode_le(&[1.0, 1.0, 1.0 + 1.0 / 64.0], d), d), "{d:?}");
            assert!(!all_ones(&encode_le(&[-1.0], d), d), "{d:?}");
        }
    }
}
