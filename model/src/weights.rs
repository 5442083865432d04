//! Weight files read through memory maps, one tensor at a time: a safetensors file, or a
//! Hugging Face sharded set (`model.safetensors.index.json` naming a file per tensor). Nothing
//! holds more than the tensor being decoded in host memory; F32, F16 and BF16 decode to f32.
//! Errors name the file and the tensor.

use crate::error::{Error, Result};
use crate::mapped::{advise_random, decode_finite, release};
use crate::checksum::{self, TENSORS_KEY};
use crate::tensorfile::{HostTensor, CHECKSUM_KEY};
use memmap2::Mmap;
use mvdit_core::dtype::{decode_le, Dtype};
use safetensors::tensor::{Dtype as StDtype, SafeTensors};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Where one tensor's bytes lie.
#[derive(Clone, Debug)]
struct Entry {
    shard: usize,
    /// The dtype, or the name of one this reader does not decode (an error only when asked for).
    dtype: std::result::Result<Dtype, String>,
    shape: Vec<usize>,
    bytes: std::ops::Range<usize>,
    /// The tensor's own stored CRC ([`TENSORS_KEY`]), when mvdit wrote it, and the name it
    /// covers (the name in the file: [`WeightFile::prefer`] reads one tensor as another).
    crc: Option<u32>,
    stored: String,
}

/// CRCs of single tensors read by [`WeightFile::get_summed`], by name.
#[derive(Default)]
pub struct Sums(BTreeMap<String, crc32fast::Hasher>);

/// The CRC of one tensor as mvdit's checksum covers it: name, shape (u64s), f32 values
/// little-endian (the stored bytes for F32; `values`, or the bytes decoded, for 16 bits).
fn tensor_sum(name: &str, shape: &[usize], dtype: Dtype, bytes: &[u8], values: Option<&[f32]>) -> crc32fast::Hasher {
    let mut h = checksum::start(name, shape);
    match (dtype, values) {
        (Dtype::F32, _) => h.update(bytes),
        (_, Some(v)) => checksum::update_values(&mut h, v),
        (_, None) => checksum::update_values(&mut h, &decode_le(bytes, dtype)),
    }
    h
}

/// Named tensors over one or more memory-mapped safetensors files.
pub struct WeightFile {
    shards: Vec<(PathBuf, Mmap)>,
    /// Each shard's stored CRC ([`CHECKSUM_KEY`]), when mvdit wrote it.
    sums: Vec<Option<String>>,
    entries: BTreeMap<String, Entry>,
    /// The string metadata of the (first) file's header.
    metadata: std::collections::HashMap<String, String>,
    /// What to call this set in messages (the file, or the index).
    origin: String,
}

fn map(path: &Path) -> Result<Mmap> {
    let f = File::open(path).map_err(|e| Error::new(format!("{}: cannot open: {e}", path.display())))?;
    // SAFETY: the map is read-only; a file changed underneath us while mapped is the user's
    // error, as for any reader of a file that another process truncates.
    unsafe { Mmap::map(&f) }.map_err(|e| Error::new(format!("{}: cannot map: {e}", path.display())))
}

type Header = (Vec<(String, Entry)>, std::collections::HashMap<String, String>);

/// Every tensor of one mapped file with its dtype, shape and byte range, and the metadata.
fn entries_of(path: &Path, bytes: &[u8], shard: usize) -> Result<Header> {
    let at = |e: String| Error::new(format!("{}: {e}", path.display()));
    SafeTensors::deserialize(bytes).map_err(|e| at(format!("not a valid safetensors file ({e})")))?;
    let (n, meta) = SafeTensors::read_metadata(bytes).map_err(|e| at(format!("bad safetensors header ({e})")))?;
    let mut metadata = meta.metadata().clone().unwrap_or_default();
    let crcs = match metadata.remove(TENSORS_KEY) {
        Some(list) => checksum::parse_tensors(&list).map_err(|e| e.context(path.display()))?,
        None => BTreeMap::new(),
    };
    let mut out = Vec::new();
    for (name, info) in meta.tensors() {
        let dtype = match info.dtype {
            StDtype::F32 => Ok(Dtype::F32),
            StDtype::F16 => Ok(Dtype::F16),
            StDtype::BF16 => Ok(Dtype::Bf16),
            other => Err(format!("{other:?}")),
        };
        let (a, b) = info.data_offsets;
        let crc = crcs.get(&name).copied();
        out.push((name.clone(), Entry { shard, dtype, shape: info.shape.clone(), bytes: 8 + n + a..8 + n + b, crc, stored: name }));
    }
    Ok((out, metadata))
}

impl WeightFile {
    /// One safetensors file, or a PyTorch checkpoint (`torch.save`d state dict, read by the
    /// restricted reader of [`crate::pt`]; no metadata, so the config comes from the caller).
    /// A directory is read by [`Self::open_dir`] (a sharded mvdit checkpoint, a Hugging Face
    /// model folder).
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Self::open_dir(path);
        }
        let m = map(path)?;
        if crate::pt::looks_like_pt(&m[..m.len().min(9)]) {
            // See `PtFile::open`: no read-around while the local headers are indexed.
            advise_random(&m, true);
            let tensors = crate::pt::index(&m).map_err(|e| e.context(path.display()))?;
            advise_random(&m, false);
            let entries = tensors.into_iter().map(|(n, t)| (n.clone(), Entry { shard: 0, dtype: Ok(t.dtype), shape: t.shape, bytes: t.bytes, crc: None, stored: n })).collect();
            let origin = path.display().to_string();
            return Ok(WeightFile { shards: vec![(path.to_path_buf(), m)], sums: vec![None], entries, metadata: Default::default(), origin });
        }
        let (entries, metadata) = entries_of(path, &m, 0)?;
        let sums = vec![metadata.get(CHECKSUM_KEY).cloned()];
        Ok(WeightFile { shards: vec![(path.to_path_buf(), m)], sums, entries: entries.into_iter().collect(), metadata, origin: path.display().to_string() })
    }

    /// A Hugging Face model directory: `model.safetensors`, or the shards that
    /// `model.safetensors.index.json` lists (its `weight_map`: tensor name → file name).
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        if !index.exists() {
            if single.exists() {
                return Self::open(&single);
            }
            return Err(Error::new(format!("{}: no model.safetensors or model.safetensors.index.json", dir.display())));
        }
        let text = std::fs::read_to_string(&index).map_err(|e| Error::new(format!("{}: cannot read: {e}", index.display())))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::new(format!("{}: not JSON ({e})", index.display())))?;
        let map_obj = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::new(format!("{}: field `weight_map` missing or not an object", index.display())))?;
        let mut files: Vec<String> = Vec::new();
        let mut owner: BTreeMap<String, usize> = BTreeMap::new();
        for (name, file) in map_obj {
            let file = file.as_str().ok_or_else(|| Error::new(format!("{}: `weight_map.{name}` is not a file name", index.display())))?;
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(Error::new(format!("{}: `weight_map.{name}` = {file:?} is not a plain file name", index.display())));
            }
            let i = files.iter().position(|f| f == file).unwrap_or_else(|| {
                files.push(file.to_string());
                files.len() - 1
            });
            owner.insert(name.clone(), i);
        }
        let mut shards = Vec::with_capacity(files.len());
        let mut entries = BTreeMap::new();
        let mut metadata = std::collections::HashMap::new();
        let mut sums = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            let path = dir.join(f);
            let m = map(&path)?;
            let (es, meta) = entries_of(&path, &m, i)?;
            sums.push(meta.get(CHECKSUM_KEY).cloned());
            if i == 0 {
                metadata = meta;
            }
            for (name, e) in es {
                if owner.get(&name) == Some(&i) {
                    entries.insert(name, e);
                }
            }
            shards.push((path, m));
        }
        if let Some(name) = owner.keys().find(|n| !entries.contains_key(*n)) {
            return Err(Error::new(format!("{}: tensor `{name}` is not in {}", index.display(), files[owner[name]])));
        }
        Ok(WeightFile { shards, sums, entries, metadata, origin: index.display().to_string() })
    }

    /// The file (or index) these weights come from, for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Each file's stored checksum ([`CHECKSUM_KEY`]), in file order: a fingerprint of the set.
    pub fn checksums(&self) -> &[Option<String>] {
        &self.sums
    }

    /// The header's string metadata (of the first shard).
    pub fn metadata(&self) -> &std::collections::HashMap<String, String> {
        &self.metadata
    }

    /// Bytes of tensor data on disk.
    pub fn data_bytes(&self) -> usize {
        self.entries.values().map(|e| e.bytes.len()).sum()
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|s| s.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries.get(name).ok_or_else(|| Error::new(format!("{}: missing tensor `{name}`", self.origin)))
    }

    /// The stored dtype of tensor `name` (None when missing or of another dtype).
    pub fn dtype(&self, name: &str) -> Option<Dtype> {
        self.entries.get(name).and_then(|e| e.dtype.clone().ok())
    }

    /// The dtype all of `names` are stored in, when they share one.
    pub fn common_dtype<'a>(&self, mut names: impl Iterator<Item = &'a str>) -> Option<Dtype> {
        let first = self.dtype(names.next()?)?;
        names.all(|n| self.dtype(n) == Some(first)).then_some(first)
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<&[usize]> {
        Ok(&self.entry(name)?.shape)
    }

    /// Tensor `name` decoded to f32, checked to have `shape` (`None` entries match any size)
    /// and finite values.
    pub fn get(&self, name: &str, shape: &[Option<usize>]) -> Result<HostTensor> {
        self.get_inner(name, shape, None)
    }

    /// [`Self::get`], adding the tensor's CRC to `sums` for [`Self::verify_with`]: a reader of
    /// every tensor checks the stored checksums without reading the files twice.
    pub fn get_summed(&self, name: &str, shape: &[Option<usize>], sums: &mut Sums) -> Result<HostTensor> {
        self.get_inner(name, shape, Some(sums))
    }

    fn get_inner(&self, name: &str, shape: &[Option<usize>], sums: Option<&mut Sums>) -> Result<HostTensor> {
        let e = self.entry(name)?;
        let (path, m) = &self.shards[e.shard];
        let at = |msg: String| Error::new(format!("{}: tensor `{name}` {msg}", path.display()));
        let fits = e.shape.len() == shape.len() && e.shape.iter().zip(shape).all(|(a, b)| b.is_none_or(|b| *a == b));
        if !fits {
            let want: Vec<String> = shape.iter().map(|s| s.map_or("?".into(), |v| v.to_string())).collect();
            return Err(at(format!("has shape {:?}, expected [{}]", e.shape, want.join(", "))));
        }
        let dtype = e.dtype.clone().map_err(|d| at(format!("has dtype {d}, not F32, F16 or BF16")))?;
        let data = decode_finite(&m[e.bytes.clone()], dtype, &path.display().to_string(), name);
        let check = e.crc.filter(|_| checksum::verifying());
        if let (true, Ok(values)) = (sums.is_some() || check.is_some(), &data) {
            let part = tensor_sum(&e.stored, &e.shape, dtype, &m[e.bytes.clone()], Some(values));
            if let Some(stored) = check.filter(|&c| c != part.clone().finalize()) {
                release(m, e.bytes.clone());
                return Err(checksum::mismatch(&e.stored, stored, part.finalize()).context(path.display()));
            }
            if let Some(sums) = sums {
                sums.0.insert(name.to_string(), part);
            }
        }
        release(m, e.bytes.clone());
        Ok(HostTensor::new(e.shape.clone(), data?))
    }

    /// Checks every shard's stored checksum (mvdit's [`CHECKSUM_KEY`]: CRC-32 over its tensors
    /// in name order, as [`TensorFile::read`](crate::TensorFile::read) checks a whole file) from
    /// the CRCs of the tensors read into `sums`, reading the others now; shards without one
    /// pass unchecked, and so does everything after [`checksum::set_verify`]`(false)`. An error
    /// names the shard, and the tensor where the file stores each tensor's CRC.
    pub fn verify_with(&self, mut sums: Sums) -> Result<()> {
        if !checksum::verifying() {
            return Ok(());
        }
        for (i, ((path, m), want)) in self.shards.iter().zip(&self.sums).enumerate() {
            let Some(want) = want else { continue };
            let mut h = crc32fast::Hasher::new();
            for (name, e) in self.entries.iter().filter(|(_, e)| e.shard == i) {
                let part = match sums.0.remove(name) {
                    Some(part) => part,
                    None => {
                        let dtype = e.dtype.clone().map_err(|d| Error::new(format!("{}: tensor `{name}` has dtype {d}", path.display())))?;
                        let part = tensor_sum(name, &e.shape, dtype, &m[e.bytes.clone()], None);
                        release(m, e.bytes.clone());
                        if let Some(stored) = e.crc.filter(|&c| c != part.clone().finalize()) {
                            return Err(checksum::mismatch(name, stored, part.finalize()).context(path.display()));
                        }
                        part
                    }
                };
                h.combine(&part);
            }
            let got = format!("{:08x}", h.finalize());
            if &got != want {
                return Err(Error::new(format!("{}: checksum mismatch (stored {want}, computed {got}): the file is corrupt", path.display())));
            }
        }
        Ok(())
    }

    /// [`Self::verify_with`] reading every tensor.
    pub fn verify(&self) -> Result<()> {
        self.verify_with(Sums::default())
    }

    /// Reads every tensor `PREFIX.name` that the file holds as `name` (a training checkpoint's
    /// EMA weights, `ema.`, in place of its live ones); returns how many were swapped in.
    pub fn prefer(&mut self, prefix: &str) -> usize {
        let swapped: Vec<(String, Entry)> = self.entries.iter().filter_map(|(n, e)| Some((n.strip_prefix(prefix)?.to_string(), e.clone()))).collect();
        let n = swapped.iter().filter(|(name, _)| self.entries.contains_key(name)).count();
        for (name, e) in swapped {
            if let Some(slot) = self.entries.get_mut(&name) {
                *slot = e;
            }
        }
        n
    }

    /// Rows `rows` of tensor `name` (along its first axis) decoded to f32 and appended to
    /// `out`: a few samples of a large shard without reading the rest. Their pages are then
    /// dropped from the resident set, as [`Self::get`] does.
    pub fn read_rows(&self, name: &str, rows: std::ops::Range<usize>, out: &mut Vec<f32>) -> Result<()> {
        let e = self.entry(name)?;
        let (path, m) = &self.shards[e.shard];
        let at = |msg: String| Error::new(format!("{}: tensor `{name}` {msg}", path.display()));
        let dtype = e.dtype.clone().map_err(|d| at(format!("has dtype {d}, not F32, F16 or BF16")))?;
        let n = e.shape.first().copied().unwrap_or(0);
        if e.shape.is_empty() || rows.start > rows.end || rows.end > n {
            return Err(at(format!("has {n} rows, asked for {rows:?}")));
        }
        let row_bytes = e.shape[1..].iter().product::<usize>() * dtype.size();
        let bytes = e.bytes.start + rows.start * row_bytes..e.bytes.start + rows.end * row_bytes;
        out.extend(decode_finite(&m[bytes.clone()], dtype, &path.display().to_string(), name)?);
        release(m, bytes);
        Ok(())
    }

    /// Drops every mapped page of the set from this process's resident set (the page cache
    /// keeps them). Reading a few rows at a time maps their neighbours too (the kernel maps the
    /// cached pages around a fault), which a release of the rows' own range leaves behind; a
    /// reader of scattered rows calls this now and then to keep its resident set flat.
    pub fn release_all(&self) {
        for (_, m) in &self.shards {
            release(m, 0..m.len());
        }
    }

    /// Integer tensor `name` (I64, I32 or U8) as i64 values with its shape.
    pub fn ints(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        let e = self.entry(name)?;
        let (path, m) = &self.shards[e.shard];
        let b = &m[e.bytes.clone()];
        let v: Vec<i64> = match e.dtype.as_ref().err().map(String::as_str) {
            Some("I64") => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
            Some("I32") => b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64).collect(),
            Some("U8") => b.iter().map(|&x| x as i64).collect(),
            _ => return Err(Error::new(format!("{}: tensor `{name}` is not an integer tensor (I64, I32 or U8)", path.display()))),
        };
        release(m, e.bytes.clone());
        Ok((e.shape.clone(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorfile::TensorFile;

    fn file_with(dir: &Path, name: &str, tensors: &[(&str, Vec<usize>)]) -> PathBuf {
        let mut f = TensorFile::default();
        for (i, (n, shape)) in tensors.iter().enumerate() {
            let len = shape.iter().product();
            f.insert(*n, HostTensor::new(shape.clone(), (0..len).map(|v| (v + i) as f32).collect()));
        }
        let p = dir.join(name);
        f.write(&p).unwrap();
        p
    }

    #[test]
    fn reads_one_tensor_at_a_time_with_checked_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let p = file_with(dir.path(), "w.safetensors", &[("a", vec![2, 3]), ("b", vec![4])]);
        let w = WeightFile::open(&p).unwrap();
        assert_eq!(w.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(w.get("a", &[Some(2), None]).unwrap().data, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let e = w.get("a", &[Some(3), None]).unwrap_err().to_string();
        assert!(e.contains("w.safetensors") && e.contains("`a`") && e.contains("[2, 3]"), "{e}");
        let e = w.get("c", &[None]).unwrap_err().to_string();
        assert!(e.contains("missing tensor `c`"), "{e}");
    }

    #[test]
    fn sixteen_bit_tensors_decode_and_other_dtypes_are_refused_when_read() {
        use safetensors::tensor::TensorView;
        let vals = [1.5f32, -0.25, 3.0e-3];
        let f16: Vec<u8> = vals.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let bf16: Vec<u8> = vals.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
        let ints: Vec<u8> = [7i64].iter().flat_map(|v| v.to_le_bytes()).collect();
        let views = vec![
            ("h", TensorView::new(StDtype::F16, vec![3], &f16).unwrap()),
            ("b", TensorView::new(StDtype::BF16, vec![3], &bf16).unwrap()),
            ("n", TensorView::new(StDtype::I64, vec![1], &ints).unwrap()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
        let w = WeightFile::open(&p).unwrap();
        let want = |f: fn(f32) -> f32| vals.iter().map(|&v| f(v)).collect::<Vec<_>>();
        assert_eq!(w.get("h", &[Some(3)]).unwrap().data, want(|v| half::f16::from_f32(v).to_f32()));
        assert_eq!(w.get("b", &[Some(3)]).unwrap().data, want(|v| half::bf16::from_f32(v).to_f32()));
        let e = w.get("n", &[Some(1)]).unwrap_err().to_string();
        assert!(e.contains("`n`") && e.contains("I64"), "{e}");
    }

    #[test]
    fn prefer_reads_the_prefixed_copies_in_place_of_the_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let p = file_with(dir.path(), "w.safetensors", &[("a", vec![2]), ("b", vec![2]), ("ema.a", vec![2]), ("ema.zz", vec![1])]);
        let mut w = WeightFile::open(&p).unwrap();
        assert_eq!(w.get("a", &[Some(2)]).unwrap().data, [0.0, 1.0]);
        assert_eq!(w.prefer("ema."), 1, "only `a` has an EMA twin; `zz` has no live tensor");
        assert_eq!(w.get("a", &[Some(2)]).unwrap().data, [2.0, 3.0]);
        assert_eq!(w.get("b", &[Some(2)]).unwrap().data, [1.0, 2.0]);
        assert!(!w.contains("zz"));
    }

    #[test]
    fn rows_and_integer_tensors_read_alone() {
        use safetensors::tensor::TensorView;
        let dir = tempfile::tempdir().unwrap();
        let p = file_with(dir.path(), "w.safetensors", &[("a", vec![3, 2])]);
        let w = WeightFile::open(&p).unwrap();
        let mut out = vec![9.0];
        w.read_rows("a", 1..3, &mut out).unwrap();
        assert_eq!(out, [9.0, 2.0, 3.0, 4.0, 5.0]);
        let e = w.read_rows("a", 2..4, &mut out).unwrap_err().to_string();
        assert!(e.contains("`a`") && e.contains("3 rows"), "{e}");
        let ints: Vec<u8> = [7i64, -2].iter().flat_map(|v| v.to_le_bytes()).collect();
        let q = dir.path().join("i.safetensors");
        std::fs::write(&q, safetensors::serialize(vec![("n", TensorView::new(StDtype::I64, vec![2], &ints).unwrap())], None).unwrap()).unwrap();
        let w = WeightFile::open(&q).unwrap();
        assert_eq!(w.ints("n").unwrap(), (vec![2], vec![7, -2]));
        let e = WeightFile::open(&p).unwrap().ints("a").unwrap_err().to_string();
        assert!(e.contains("not an integer tensor"), "{e}");
    }

    #[test]
    fn a_sharded_directory_follows_its_index() {
        let dir = tempfile::tempdir().unwrap();
        file_with(dir.path(), "model-00001-of-00002.safetensors", &[("x", vec![2])]);
        file_with(dir.path(), "model-00002-of-00002.safetensors", &[("y", vec![3])]);
        let index = r#"{"metadata": {}, "weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}}"#;
        std::fs::write(dir.path().join("model.safetensors.index.json"), index).unwrap();
        let w = WeightFile::open_dir(dir.path()).unwrap();
        assert_eq!(w.shape("y").unwrap(), [3]);
        assert_eq!(w.get("x", &[Some(2)]).unwrap().data, [0.0, 1.0]);
        let bad = r#"{"weight_map": {"x": "../elsewhere.safetensors"}}"#;
        std::fs::write(dir.path().join("model.safetensors.index.json"), bad).unwrap();
        let e = WeightFile::open_dir(dir.path()).err().unwrap().to_string();
        assert!(e.contains("weight_map.x") && e.contains("plain file name"), "{e}");
        let e = WeightFile::open_dir(&dir.path().join("nope")).err().unwrap().to_string();
        assert!(e.contains("no model.safetensors"), "{e}");
    }
}
