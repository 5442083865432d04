//! Safetensors checkpoints written tensor by tensor: the names and shapes are known up front, so
//! the header goes first and each tensor is then fetched (downloaded from its device), encoded,
//! written and dropped. The host holds one tensor at a time, never the whole state.
//!
//! A checkpoint that fits one shard is one file, `STEM.safetensors`, holding what
//! [`TensorFile::write`](crate::TensorFile::write) would write for the same tensors (tensors in
//! name order, the [`CHECKSUM_KEY`] CRC and each tensor's, which [`TensorFile::read`](crate::TensorFile::read) verifies). A larger one is a directory `STEM/` in the Hugging Face
//! layout: `model-00001-of-0000N.safetensors` … (every shard's header carries the metadata and
//! the CRC of its own tensors) and [`INDEX_NAME`] (`metadata` + `weight_map`: tensor → file),
//! which [`WeightFile::open_dir`](crate::WeightFile::open_dir) reads.
//!
//! Atomic either way: the file or the directory is written under a temporary name
//! (`.STEM.safetensors.tmpPID`, `.STEM.tmpPID/`: what
//! [`interrupted_write`](crate::tensorfile::interrupted_write) recognises), synced, and renamed
//! into place; a crash leaves the temporary name only, never a partial `STEM`.

use crate::error::{Error, Result};
use crate::checksum::{self, TENSORS_KEY};
use crate::tensorfile::{partial_name, write_atomic_with, CHECKSUM_KEY};
use std::collections::{BTreeMap, HashMap};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The index file of a sharded checkpoint directory.
pub const INDEX_NAME: &str = "model.safetensors.index.json";

/// One f32 tensor to write: its name and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub name: String,
    pub shape: Vec<usize>,
}

impl Planned {
    /// Bytes of its f32 values.
    pub fn bytes(&self) -> u64 {
        4 * self.shape.iter().product::<usize>() as u64
    }
}

/// Gives the f32 values of a tensor by name (downloads it); called once per tensor.
pub type Fetch<'f> = dyn FnMut(&str) -> Result<Vec<f32>> + 'f;

/// Shards of `tensors` (sorted by name): consecutive runs whose data stays within `shard_bytes`
/// each; a tensor larger than that is a shard of its own. Returns index ranges into `tensors`.
pub fn plan_shards(tensors: &[Planned], shard_bytes: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0u64);
    for (i, t) in tensors.iter().enumerate() {
        if i > start && size + t.bytes() > shard_bytes {
            out.push(start..i);
            (start, size) = (i, 0);
        }
        size += t.bytes();
    }
    if start < tensors.len() {
        out.push(start..tensors.len());
    }
    out
}

/// The file name of shard `i` (from 0) of `n`: `model-00001-of-00003.safetensors`.
pub fn shard_name(i: usize, n: usize) -> String {
    format!("model-{:05}-of-{n:05}.safetensors", i + 1)
}

/// The safetensors header of `tensors` (in this order, data back to back) with `metadata`, the
/// file's checksum `crc` and each tensor's (`crcs`, in the same order; see [`checksum`]): the
/// 8-byte little-endian length, then the JSON padded with spaces to a multiple of 8 bytes, as
/// the safetensors crate writes it. Its length does not depend on the checksums, so a header of
/// zeros can be overwritten in place.
pub fn header(tensors: &[Planned], metadata: &HashMap<String, String>, crc: u32, crcs: &[u32]) -> Result<Vec<u8>> {
    let mut meta: BTreeMap<&str, &str> = metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (crc, list) = (checksum::hex(crc), checksum::tensors_value(tensors.iter().map(|t| t.name.as_str()).zip(crcs.iter().copied())));
    meta.insert(CHECKSUM_KEY, &crc);
    meta.insert(TENSORS_KEY, &list);
    let mut json = serde_json::Map::new();
    json.insert("__metadata__".into(), serde_json::to_value(&meta).map_err(|e| Error::new(format!("cannot serialise metadata: {e}")))?);
    let mut offset = 0u64;
    for t in tensors {
        let end = offset + t.bytes();
        json.insert(t.name.clone(), serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    let mut text = serde_json::to_vec(&json).map_err(|e| Error::new(format!("cannot serialise header: {e}")))?;
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    Ok(out)
}

/// Writes one safetensors file at `path` (not atomic: the caller's temporary file) holding
/// `tensors` in this order (sorted by name, as the checksum covers them): a placeholder header,
/// each tensor fetched, checksummed and written as f32 little-endian, then the header with the
/// CRC over the tensors (name, shape as u64s, values) written over the placeholder.
fn write_shard(path: &Path, tensors: &[Planned], metadata: &HashMap<String, String>, fetch: &mut Fetch) -> Result<()> {
    let io = |what: &str, e: std::io::Error| Error::new(format!("{}: cannot {what}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(|e| io("create", e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    w.write_all(&header(tensors, metadata, 0, &vec![0; tensors.len()])?).map_err(|e| io("write", e))?;
    let mut parts = Vec::with_capacity(tensors.len());
    let mut buf = Vec::with_capacity(1 << 16);
    for t in tensors {
        let values = fetch(&t.name)?;
        if values.len() as u64 * 4 != t.bytes() {
            return Err(Error::new(format!("tensor `{}`: {} values for shape {:?}", t.name, values.len(), t.shape)));
        }
        let mut h = checksum::start(&t.name, &t.shape);
        for chunk in values.chunks(1 << 14) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            h.update(&buf);
            w.write_all(&buf).map_err(|e| io("write", e))?;
        }
        parts.push(h);
    }
    let mut file = w.into_inner().map_err(|e| io("write", e.into_error()))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| io("seek", e))?;
    let crcs: Vec<u32> = parts.iter().map(|p| p.clone().finalize()).collect();
    file.write_all(&header(tensors, metadata, checksum::combine(&parts), &crcs)?).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("sync", e))
}

/// The index JSON of a sharded checkpoint: `metadata` (the checkpoint's string metadata and
/// `total_size`, bytes of tensor data) and `weight_map` (tensor name → shard file).
pub fn index_json(tensors: &[Planned], shards: &[std::ops::Range<usize>], metadata: &HashMap<String, String>) -> String {
    let mut meta: serde_json::Map<String, serde_json::Value> = metadata.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
    meta.insert("total_size".into(), tensors.iter().map(Planned::bytes).sum::<u64>().into());
    let mut map = serde_json::Map::new();
    for (i, r) in shards.iter().enumerate() {
        for t in &tensors[r.clone()] {
            map.insert(t.name.clone(), shard_name(i, shards.len()).into());
        }
    }
    serde_json::to_string_pretty(&serde_json::json!({"metadata": meta, "weight_map": map})).expect("plain JSON")
}

/// fsync of a directory, so the names written in it survive a crash. No effect off Unix.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::new(format!("{}: cannot sync: {e}", dir.display())))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes checkpoint `stem` in folder `dir`: `dir/STEM.safetensors` when its tensors fit one
/// shard of `shard_bytes`, else the directory `dir/STEM/` of shards and [`INDEX_NAME`]; each
/// tensor of `tensors` comes from `fetch` once, in name order. Atomic (see the module); the
/// other form of the same checkpoint, if present, is removed afterwards. Returns the path.
pub fn write_checkpoint(dir: &Path, stem: &str, mut tensors: Vec<Planned>, metadata: &HashMap<String, String>, shard_bytes: u64, fetch: &mut Fetch) -> Result<PathBuf> {
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = tensors.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(Error::new(format!("tensor `{}` twice in a checkpoint", w[0].name)));
    }
    let shards = plan_shards(&tensors, shard_bytes);
    let (file, folder) = (dir.join(format!("{stem}.safetensors")), dir.join(stem));
    if shards.len() <= 1 {
        write_atomic_with(&file, |tmp| write_shard(tmp, &tensors, metadata, fetch))?;
        remove_any(&folder);
        return Ok(file);
    }
    let tmp = dir.join(partial_name(stem, std::process::id()));
    let result = (|| {
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).map_err(|e| Error::new(format!("{}: cannot create: {e}", tmp.display())))?;
        for (i, r) in shards.iter().enumerate() {
            write_shard(&tmp.join(shard_name(i, shards.len())), &tensors[r.clone()], metadata, fetch)?;
        }
        let index = tmp.join(INDEX_NAME);
        let mut f = std::fs::File::create(&index).map_err(|e| Error::new(format!("{}: cannot create: {e}", index.display())))?;
        f.write_all(index_json(&tensors, &shards, metadata).as_bytes()).and_then(|_| f.sync_all()).map_err(|e| Error::new(format!("{}: cannot write: {e}", index.display())))?;
        sync_dir(&tmp)?;
        // A directory is renamed only onto a missing or empty one: an older copy of this very
        // checkpoint moves aside first (a crash then leaves it under a temporary name).
        if folder.exists() {
            let old = dir.join(partial_name(&format!("{stem}.old"), std::process::id()));
            std::fs::rename(&folder, &old).map_err(|e| Error::new(format!("{}: cannot move aside: {e}", folder.display())))?;
            remove_any(&old);
        }
        std::fs::rename(&tmp, &folder).map_err(|e| Error::new(format!("{}: cannot rename into place: {e}", folder.display())))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        return result.map(|_| folder);
    }
    remove_any(&file);
    Ok(folder)
}

/// Removes a file or a directory tree at `path`, if there is one (best effort).
pub fn remove_any(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => drop(std::fs::remove_dir_all(path)),
        Ok(_) => drop(std::fs::remove_file(path)),
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorfile::{HostTensor, TensorFile};
    use crate::WeightFile;

    fn planned(name: &str, shape: &[usize]) -> Planned {
        Planned { name: name.into(), shape: shape.to_vec() }
    }

    /// Tensors `t0` … with `len` values each, value k of tensor i = i·1000 + k.
    fn tensors(lens: &[usize]) -> (Vec<Planned>, impl FnMut(&str) -> Result<Vec<f32>>) {
        let list = lens.iter().enumerate().map(|(i, &n)| planned(&format!("t{i}"), &[n])).collect();
        let lens = lens.to_vec();
        let fetch = move |name: &str| {
            let i: usize = name[1..].parse().unwrap();
            Ok((0..lens[i]).map(|k| (i * 1000 + k) as f32).collect())
        };
        (list, fetch)
    }

    #[test]
    fn shards_split_in_order_within_the_size_and_a_large_tensor_stands_alone() {
        let t: Vec<Planned> = [2, 3, 10, 1, 1].iter().enumerate().map(|(i, &n)| planned(&format!("t{i}"), &[n])).collect();
        assert_eq!(plan_shards(&t, 20), [0..2, 2..3, 3..5]);
        assert_eq!(plan_shards(&t, 1000), [0..5]);
        assert_eq!(plan_shards(&t, 1), [0..1, 1..2, 2..3, 3..4, 4..5]);
        assert!(plan_shards(&[], 8).is_empty());
        assert_eq!(shard_name(1, 12), "model-00002-of-00012.safetensors");
    }

    #[test]
    fn the_header_has_back_to_back_offsets_padding_and_a_fixed_length() {
        let t = [planned("a", &[2, 3]), planned("b", &[5])];
        let meta = HashMap::from([("step".to_string(), "7".to_string())]);
        let h = header(&t, &meta, 0, &[0, 0]).unwrap();
        assert_eq!(h.len(), header(&t, &meta, 0xdeadbeef, &[0xffffffff, 7]).unwrap().len());
        let n = u64::from_le_bytes(h[..8].try_into().unwrap()) as usize;
        assert_eq!((n % 8, h.len()), (0, 8 + n));
        let json: serde_json::Value = serde_json::from_slice(&h[8..]).unwrap();
        assert_eq!(json["a"]["data_offsets"], serde_json::json!([0, 24]));
        assert_eq!(json["b"]["data_offsets"], serde_json::json!([24, 44]));
        assert_eq!(json["b"]["dtype"], "F32");
        assert_eq!(json["__metadata__"]["step"], "7");
    }

    #[test]
    fn one_shard_is_one_file_that_tensorfile_reads_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (list, mut fetch) = tensors(&[3, 5, 2]);
        let meta = HashMap::from([("config".to_string(), "{}".to_string())]);
        let path = write_checkpoint(dir.path(), "step-00000001", list.clone(), &meta, 1 << 20, &mut fetch).unwrap();
        assert_eq!(path, dir.path().join("step-00000001.safetensors"));
        let mut want = TensorFile { metadata: meta.clone(), ..Default::default() };
        for t in &list {
            want.insert(t.name.clone(), HostTensor::new(t.shape.clone(), fetch(&t.name).unwrap()));
        }
        assert_eq!(TensorFile::read(&path).unwrap(), want);
    }

    #[test]
    fn shards_and_index_read_back_with_metadata_in_every_shard() {
        let dir = tempfile::tempdir().unwrap();
        let (list, mut fetch) = tensors(&[3, 5, 2, 7, 1]);
        let meta = HashMap::from([("step".to_string(), "9".to_string())]);
        // Bytes 12, 20, 8, 28, 4 within 32 a shard: [t0 t1] [t2] [t3 t4].
        let path = write_checkpoint(dir.path(), "step-00000009", list.clone(), &meta, 32, &mut fetch).unwrap();
        assert_eq!(path, dir.path().join("step-00000009"));
        let mut files: Vec<String> = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        files.sort();
        assert_eq!(files, ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", INDEX_NAME]);
        let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path.join(INDEX_NAME)).unwrap()).unwrap();
        assert_eq!(index["weight_map"]["t1"], "model-00001-of-00003.safetensors");
        assert_eq!(index["weight_map"]["t2"], "model-00002-of-00003.safetensors");
        assert_eq!(index["weight_map"]["t4"], "model-00003-of-00003.safetensors");
        assert_eq!(index["metadata"]["step"], "9");
        assert_eq!(index["metadata"]["total_size"], 72);
        for f in &files[..3] {
            let shard = TensorFile::read(&path.join(f)).unwrap();
            assert_eq!(shard.metadata["step"], "9", "{f}: metadata and a verified checksum in every shard");
        }
        let w = WeightFile::open(&path).unwrap();
        for t in &list {
            assert_eq!(w.get(&t.name, &[None]).unwrap().data, fetch(&t.name).unwrap());
        }
        assert_eq!(w.metadata()["step"], "9");
        w.verify().unwrap();
        // Written again as one file: the directory form goes, no temporary name stays.
        let p = write_checkpoint(dir.path(), "step-00000009", list, &meta, 1 << 20, &mut fetch).unwrap();
        assert!(p.is_file() && !path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_flipped_byte_is_named_by_shard_and_tensor_on_read_and_on_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (list, mut fetch) = tensors(&[3, 5, 2, 7, 1]);
        let path = write_checkpoint(dir.path(), "step-00000009", list, &HashMap::new(), 32, &mut fetch).unwrap();
        // Shard 3 holds [t3 t4]: flip the lowest bit of t3's first value.
        let shard = path.join("model-00003-of-00003.safetensors");
        let mut bytes = std::fs::read(&shard).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        bytes[8 + n] ^= 1;
        std::fs::write(&shard, bytes).unwrap();
        let w = WeightFile::open(&path).unwrap();
        let e = w.get("t3", &[None]).unwrap_err().to_string();
        assert!(e.contains("model-00003-of-00003.safetensors: tensor `t3`: checksum mismatch"), "{e}");
        assert_eq!(w.get("t4", &[None]).unwrap().data, fetch("t4").unwrap());
        let e = w.verify().unwrap_err().to_string();
        assert!(e.contains("model-00003-of-00003.safetensors: tensor `t3`: checksum mismatch"), "{e}");
    }

    #[test]
    fn a_failed_fetch_leaves_no_checkpoint_and_no_temporary_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (list, mut fetch) = tensors(&[3, 5, 2]);
        let mut failing = |name: &str| if name == "t2" { Err(Error::new("device lost")) } else { fetch(name) };
        let e = write_checkpoint(dir.path(), "step-00000002", list, &HashMap::new(), 16, &mut failing).unwrap_err();
        assert!(e.0.contains("device lost"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
