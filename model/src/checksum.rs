//! mvdit's checksums in the safetensors files it writes: a CRC-32 per tensor (its name, its shape
//! as u64s, its f32 values little-endian) in metadata key [`TENSORS_KEY`], and their
//! combination, the CRC of all the file's tensors in name order, in [`FILE_KEY`]. A reader checks
//! each tensor as it decodes it and names the tensor and the file on a mismatch; files from
//! elsewhere (no keys) load unchecked. [`set_verify`] turns every check off (a speed option).

use crate::error::{Error, Result};
use crc32fast::Hasher;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Metadata key of the CRC-32 over every tensor of a file (name, shape, values).
pub const FILE_KEY: &str = "mvdit.crc32";

/// Metadata key of each tensor's own CRC-32: a JSON object, tensor name → 8 hex digits.
pub const TENSORS_KEY: &str = "mvdit.crc32.tensors";

static VERIFY: AtomicBool = AtomicBool::new(true);

/// Whether readers check the stored checksums (on unless [`set_verify`]`(false)`).
pub fn verifying() -> bool {
    VERIFY.load(Ordering::Relaxed)
}

/// Turns the checks of every reader in this process on or off (`--no-verify`): reading then
/// costs no CRC, and a flipped bit goes unnoticed.
pub fn set_verify(on: bool) {
    VERIFY.store(on, Ordering::Relaxed)
}

/// A tensor's hasher after its name and shape; its values follow as f32 little-endian bytes.
pub fn start(name: &str, shape: &[usize]) -> Hasher {
    let mut h = Hasher::new();
    h.update(name.as_bytes());
    shape.iter().for_each(|&s| h.update(&(s as u64).to_le_bytes()));
    h
}

/// Adds f32 `values` to `h` as little-endian bytes.
pub fn update_values(h: &mut Hasher, values: &[f32]) {
    let mut buf = Vec::with_capacity(4 << 14);
    for chunk in values.chunks(1 << 14) {
        buf.clear();
        buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
        h.update(&buf);
    }
}

/// The CRC of one tensor.
pub fn of_values(name: &str, shape: &[usize], values: &[f32]) -> Hasher {
    let mut h = start(name, shape);
    update_values(&mut h, values);
    h
}

/// 8 lower-case hex digits, as both keys store a CRC.
pub fn hex(crc: u32) -> String {
    format!("{crc:08x}")
}

/// The file CRC of tensors whose own CRCs are `parts`, in name order.
pub fn combine<'a>(parts: impl IntoIterator<Item = &'a Hasher>) -> u32 {
    let mut h = Hasher::new();
    parts.into_iter().for_each(|p| h.combine(p));
    h.finalize()
}

/// The [`TENSORS_KEY`] value of `(name, crc)` pairs: its length depends on the names only, so
/// a header written with zeros can be overwritten in place once the values are known.
pub fn tensors_value<'a>(sums: impl IntoIterator<Item = (&'a str, u32)>) -> String {
    let map: BTreeMap<&str, String> = sums.into_iter().map(|(n, c)| (n, hex(c))).collect();
    serde_json::to_string(&map).expect("plain JSON")
}

/// The per-tensor CRCs stored under [`TENSORS_KEY`].
pub fn parse_tensors(value: &str) -> Result<BTreeMap<String, u32>> {
    let bad = || Error::new(format!("metadata `{TENSORS_KEY}` is malformed: the file is corrupt"));
    let map: BTreeMap<String, String> = serde_json::from_str(value).map_err(|_| bad())?;
    map.into_iter().map(|(n, c)| Ok((n, u32::from_str_radix(&c, 16).ok().filter(|_| c.len() == 8).ok_or_else(bad)?))).collect()
}

/// The error of tensor `name` whose values do not match its stored CRC.
pub fn mismatch(name: &str, stored: u32, computed: u32) -> Error {
    Error::new(format!("tensor `{name}`: checksum mismatch (stored {}, computed {}): the file is corrupt", hex(stored), hex(computed)))
}

/// CRC-32 of `bytes` (a data shard written from memory: [`of_file`] of the file).
pub fn of_bytes(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// CRC-32 of a whole file's bytes, read in 1 MiB pieces (a data shard's `crc32` in shards.json).
pub fn of_file(path: &Path) -> Result<u32> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::new(format!("{}: cannot open: {e}", path.display())))?;
    let (mut h, mut buf) = (crc32fast::Hasher::new(), vec![0u8; 1 << 20]);
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(h.finalize()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::new(format!("{}: cannot read: {e}", path.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_crc_is_its_tensors_crcs_combined_in_name_order() {
        let (a, b) = (of_values("a", &[2], &[1.0, 2.0]), of_values("b", &[1], &[3.0]));
        let mut whole = start("a", &[2]);
        update_values(&mut whole, &[1.0, 2.0]);
        whole.update(b"b");
        whole.update(&1u64.to_le_bytes());
        whole.update(&3.0f32.to_le_bytes());
        assert_eq!(combine([&a, &b]), whole.finalize());
        assert_ne!(of_values("a", &[2], &[1.0, 2.0]).finalize(), of_values("a", &[1, 2], &[1.0, 2.0]).finalize(), "the shape counts");
    }

    #[test]
    fn the_tensor_list_round_trips_and_keeps_its_length() {
        let v = tensors_value([("x.w", 0xdeadbeef), ("a", 7)]);
        assert_eq!(v, r#"{"a":"00000007","x.w":"deadbeef"}"#);
        assert_eq!(v.len(), tensors_value([("x.w", 0), ("a", 0)]).len());
        let back = parse_tensors(&v).unwrap();
        assert_eq!((back["a"], back["x.w"]), (7, 0xdeadbeef));
        for bad in ["[]", r#"{"a":"123"}"#, r#"{"a":"zzzzzzzz"}"#, r#"{"a":1}"#] {
            assert!(parse_tensors(bad).unwrap_err().0.contains("malformed"), "{bad}");
        }
        assert!(mismatch("w", 1, 2).0.contains("tensor `w`: checksum mismatch (stored 00000001, computed 00000002)"));
    }
}
