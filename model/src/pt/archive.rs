//! The zip container of `torch.save`: `<prefix>/data.pkl`, `<prefix>/byteorder`, and one stored
//! (uncompressed) entry `<prefix>/data/<key>` per storage. Only the central directory and the
//! local headers are read here; entry data stays in the mapped file and is sliced later.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::io::Cursor;
use std::ops::Range;

/// One archive entry: where its bytes are, or why they cannot be used as they are.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Byte range of the entry's data in the file.
    pub bytes: Range<usize>,
    /// `None` for a stored entry; otherwise what is wrong with it (compressed, encrypted).
    pub unusable: Option<String>,
}

/// The entries of a torch checkpoint archive, by name, and its record prefix (`name/`).
#[derive(Debug)]
pub struct Archive {
    pub prefix: String,
    pub entries: HashMap<String, Entry>,
}

/// What a file that is not a zip archive probably is, for the message.
fn not_a_zip(bytes: &[u8], e: impl std::fmt::Display) -> Error {
    if bytes.starts_with(&[0x80, 0x02, 0x8a]) {
        return Error::new(
            "a legacy (torch < 1.6, non-zip) torch.save file; re-save it with a current torch: \
             torch.save(torch.load(f, weights_only=True), g)",
        );
    }
    Error::new(format!("not a PyTorch checkpoint: the zip archive cannot be read ({e}); a truncated or damaged download?"))
}

/// A zip compression method's common name.
fn method_name(m: zip::CompressionMethod) -> String {
    use zip::CompressionMethod as M;
    let known = [(M::DEFLATE, "deflate"), (M::DEFLATE64, "deflate64"), (M::BZIP2, "bzip2"), (M::LZMA, "lzma"), (M::ZSTD, "zstd"), (M::XZ, "xz"), (M::AES, "AES-encrypted")];
    known.iter().find(|(k, _)| *k == m).map_or_else(|| format!("{m:?}"), |(_, n)| n.to_string())
}

fn le(b: &[u8], at: usize, n: usize) -> u64 {
    b[at..at + n].iter().rev().fold(0, |v, &x| v << 8 | x as u64)
}

/// Checks the end records before the zip crate reads the directory. `torch.save` writes no
/// archive comment, so the end record is the file's last 22 bytes (a truncated download fails
/// here at once, not after a backward scan of the whole file), preceded by the zip64 locator
/// when there is one. Each record's entry count must fit its directory's size, and the directory
/// the file, so the crate's entry table (reserved from the count) is bounded by the file.
fn check_end_records(bytes: &[u8]) -> Result<()> {
    let n = bytes.len();
    let Some(eocd) = n.checked_sub(22).map(|i| &bytes[i..]).filter(|e| e.starts_with(b"PK\x05\x06")) else {
        return Err(not_a_zip(bytes, "no end-of-archive record in its last 22 bytes"));
    };
    let fits = |entries: u64, size: u64, start: u64| {
        if entries.saturating_mul(46) > size || start.saturating_add(size) > n as u64 {
            return Err(not_a_zip(bytes, format!("{entries} entries in a directory of {size} bytes at byte {start} do not fit")));
        }
        Ok(())
    };
    // A saturated total count or directory offset defers to the zip64 record, as in the zip
    // crate, which otherwise reads the 32-bit fields (its table: this disk's count).
    let (entries, size, start) = (le(eocd, 8, 2).max(le(eocd, 10, 2)), le(eocd, 12, 4), le(eocd, 16, 4));
    let saturated = le(eocd, 10, 2) == 0xffff || start == 0xffff_ffff;
    if !saturated {
        fits(entries, size, start)?;
    }
    if n >= 42 && bytes[n - 42..].starts_with(b"PK\x06\x07") {
        let at = le(&bytes[n - 42..], 8, 8);
        let record = usize::try_from(at).ok().filter(|&a| a.checked_add(56).is_some_and(|end| end <= n - 42)).map(|a| &bytes[a..a + 56]);
        let Some(r) = record.filter(|r| r.starts_with(b"PK\x06\x06")) else {
            return Err(not_a_zip(bytes, "the zip64 end record is not where its locator says"));
        };
        fits(le(r, 24, 8).max(le(r, 32, 8)), le(r, 40, 8), le(r, 48, 8))?;
    } else if saturated {
        return Err(not_a_zip(bytes, "zip64 sizes without a zip64 end record"));
    }
    Ok(())
}

impl Archive {
    pub fn read(bytes: &[u8]) -> Result<Self> {
        check_end_records(bytes)?;
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| not_a_zip(bytes, e))?;
        let mut entries = HashMap::new();
        let mut pickles = Vec::new();
        for i in 0..zip.len() {
            let f = zip.by_index_raw(i).map_err(|e| Error::new(format!("zip entry {i} cannot be read ({e}); a damaged file?")))?;
            let name = f.name().to_string();
            let start = f.data_start();
            let len = f.compressed_size();
            let end = start.checked_add(len).filter(|&e| e <= bytes.len() as u64).ok_or_else(|| {
                Error::new(format!("zip entry `{name}` ({len} bytes from byte {start}) runs past the end of the file ({} bytes): truncated?", bytes.len()))
            })?;
            let unusable = if f.encrypted() {
                Some(format!("entry `{name}` is encrypted"))
            } else if f.compression() != zip::CompressionMethod::Stored {
                Some(format!("entry `{name}` is compressed ({}); torch.save writes stored (uncompressed) entries, re-save the checkpoint with torch.save", method_name(f.compression())))
            } else if f.size() != len {
                Some(format!("entry `{name}` is stored with {len} bytes but says it holds {}", f.size()))
            } else {
                None
            };
            if let Some((p, "data.pkl")) = name.rsplit_once('/') {
                if !p.is_empty() && !p.contains('/') {
                    pickles.push(format!("{p}/"));
                }
            }
            entries.insert(name, Entry { bytes: start as usize..end as usize, unusable });
        }
        let prefix = match pickles.as_slice() {
            [one] => one.clone(),
            [] => return Err(Error::new("no `<name>/data.pkl` in the zip archive: not a torch.save checkpoint")),
            many => return Err(Error::new(format!("{} `data.pkl` records in one archive ({}): not a torch.save checkpoint", many.len(), many.join(", ")))),
        };
        let archive = Archive { prefix, entries };
        if let Some(order) = archive.get("byteorder", bytes).ok().map(|b| String::from_utf8_lossy(b).trim().to_string()) {
            if order != "little" {
                return Err(Error::new(format!("byte order {order:?}: only little-endian checkpoints are read")));
            }
        }
        Ok(archive)
    }

    /// The bytes of record `name` (below the prefix), refusing compressed or encrypted entries.
    pub fn get<'b>(&self, name: &str, bytes: &'b [u8]) -> Result<&'b [u8]> {
        Ok(&bytes[self.entry(name)?.1])
    }

    /// The entry of record `name`, with its byte range checked usable.
    pub fn entry(&self, name: &str) -> Result<(String, Range<usize>)> {
        let full = format!("{}{name}", self.prefix);
        let e = self.entries.get(&full).ok_or_else(|| Error::new(format!("the archive has no `{full}`")))?;
        if let Some(why) = &e.unusable {
            return Err(Error::new(why.clone()));
        }
        Ok((full, e.bytes.clone()))
    }
}
