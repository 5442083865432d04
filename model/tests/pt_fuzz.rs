//! Fuzzing the `.pt` reader (zip directory, restricted unpickler, state-dict checks) with over
//! 10⁵ mutated checkpoints: every one must give Ok or an error message, never a panic, and no
//! allocation may be large next to the input (the counting allocator below records the largest
//! request and the peak of live bytes). Mutations: in place inside `data.pkl` (opcodes, lengths,
//! memo indices, spliced runs), in place in the zip's central directory (sizes, offsets), and
//! anywhere in the file with length changes (truncation, insertion, bit flips).
//! To look closer: `SHOW=1` counts the refusals by message, `DUMP=i` writes mutation i to
//! `$TMPDIR/pt-fuzz-case.pt` (run with `-- --nocapture`).

use mvdit_model::pt;
use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Relaxed);
        let live = LIVE.fetch_add(l.size(), Relaxed) + l.size();
        PEAK.fetch_max(live, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Relaxed);
        if new >= l.size() {
            let live = LIVE.fetch_add(new - l.size(), Relaxed) + new - l.size();
            PEAK.fetch_max(live, Relaxed);
        } else {
            LIVE.fetch_sub(l.size() - new, Relaxed);
        }
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 17
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes worth planting in a pickle: opcodes that build, call, index the memo or read lengths.
const OPCODES: &[u8] = b"()t}]uesabRQhjqr.NKJMXcG012\x80\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x93\x94\x95\xff\x00";
const WORDS: [u32; 7] = [0, 1, 2, 0x7f, 0xffff, 0x7fff_ffff, 0xffff_ffff];

/// One in-place change of `b[range]`: a bit flip, an opcode, a 4-byte length, or a copied run.
fn poke(b: &mut [u8], range: std::ops::Range<usize>, r: &mut Rng) {
    let (lo, n) = (range.start, range.len());
    if n == 0 {
        return;
    }
    let i = lo + r.below(n);
    match r.below(4) {
        0 => b[i] ^= 1 << r.below(8),
        1 => b[i] = OPCODES[r.below(OPCODES.len())],
        2 if i + 4 <= range.end => b[i..i + 4].copy_from_slice(&WORDS[r.below(WORDS.len())].to_le_bytes()),
        _ => {
            let len = 1 + r.below(16.min(n));
            let (from, to) = (lo + r.below(n + 1 - len), lo + r.below(n + 1 - len));
            b.copy_within(from..from + len, to);
        }
    }
}

/// Truncation, insertion, a bit flip or a byte set anywhere (the length may change).
fn anywhere(seed: &[u8], r: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    match r.below(4) {
        0 => b.truncate(r.below(b.len() + 1)),
        1 => {
            let at = r.below(b.len() + 1);
            let n = 1 + r.below(8);
            b.splice(at..at, (0..n).map(|_| r.next() as u8));
        }
        2 => {
            let i = r.below(b.len());
            b[i] ^= 1 << r.below(8);
        }
        _ => {
            let i = r.below(b.len());
            b[i] = [0, 0xff, b'P', b'K', 0x80][r.below(5)];
        }
    }
    b
}

struct Seed {
    bytes: Vec<u8>,
    /// Where `data.pkl`'s bytes are.
    pickle: std::ops::Range<usize>,
}

fn seed(name: &str) -> Seed {
    let dir = std::env::var_os("MVDIT_GOLDEN_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden"));
    let bytes = std::fs::read(dir.join("pt").join(name)).unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&bytes[..])).unwrap();
    let i = (0..zip.len()).find(|&i| zip.by_index_raw(i).unwrap().name().ends_with("/data.pkl")).unwrap();
    let f = zip.by_index_raw(i).unwrap();
    let pickle = f.data_start() as usize..(f.data_start() + f.compressed_size()) as usize;
    drop(f);
    drop(zip);
    Seed { bytes, pickle }
}

/// Runs the reader on `b`: Ok(tensors), Err(message), with every returned range checked.
fn check(b: &[u8]) -> Result<usize, String> {
    let tensors = pt::index(b).map_err(|e| e.0)?;
    for (name, t) in &tensors {
        assert!(t.bytes.end <= b.len() && t.bytes.len() == t.numel() * t.dtype.size(), "`{name}`: {t:?} in {} bytes", b.len());
        let _ = mvdit_core::dtype::decode_le(&b[t.bytes.clone()], t.dtype);
    }
    Ok(tensors.len())
}

#[test]
fn mutated_checkpoints_never_panic_or_allocate_much() {
    // Protocols 2 (with BUILD), 4 and 5 (with _rebuild_parameter), one shared f16 storage, and
    // the small hostile and broken ones.
    let names = ["plain.pt", "nested-model.pt", "state-dict-params.pt", "f16-views.pt", "evil-os-system.pt", "short-storage.pt", "non-contiguous.pt"];
    let seeds: Vec<Seed> = names.iter().map(|n| seed(n)).collect();
    for s in &seeds[..4] {
        assert!(check(&s.bytes).is_ok(), "the good seeds must read");
    }
    let start = std::time::Instant::now();
    let mut r = Rng(20);
    let (mut ok, mut rejected, mut worst_peak, mut worst) = (0usize, 0usize, 0usize, String::new());
    let cases = 100_000;
    let mut kinds = std::collections::BTreeMap::new();
    for i in 0..cases {
        let s = &seeds[i % seeds.len()];
        let mut work = s.bytes.clone();
        let bytes = match r.below(4) {
            0 | 1 => {
                for _ in 0..1 + r.below(3) {
                    poke(&mut work, s.pickle.clone(), &mut r);
                }
                work
            }
            // the central directory and its end record: the last entries' headers
            2 => {
                let n = work.len();
                let tail = n.saturating_sub(600)..n;
                poke(&mut work, tail, &mut r);
                work
            }
            _ => anywhere(&s.bytes, &mut r),
        };
        if std::env::var("DUMP").ok().and_then(|v| v.parse::<usize>().ok()) == Some(i) {
            std::fs::write(std::env::temp_dir().join("pt-fuzz-case.pt"), &bytes).unwrap();
        }
        let base = LIVE.load(Relaxed);
        PEAK.store(base, Relaxed);
        LARGEST.store(0, Relaxed);
        let result = catch_unwind(AssertUnwindSafe(|| check(&bytes)));
        let (largest, peak) = (LARGEST.load(Relaxed), PEAK.load(Relaxed).saturating_sub(base));
        match &result {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                assert!(!e.is_empty());
                if std::env::var_os("SHOW").is_some() {
                    let key: String = e.split(|c: char| c.is_ascii_digit()).next().unwrap_or("").chars().take(90).collect();
                    *kinds.entry(key).or_insert(0usize) += 1;
                }
                rejected += 1;
            }
            Err(_) => panic!("the reader panicked on mutation {i} of {}", names[i % seeds.len()]),
        }
        // Bounded by the input: the zip directory's entry table is the largest thing made (or,
        // when the end record's directory fails to parse and the zip crate tries an earlier end
        // record, a table of at most 65535 entries: about 10 MB whatever the input).
        let bound = 16 * bytes.len() + (16 << 20);
        assert!(largest <= bound && peak <= 2 * bound, "mutation {i} of {}: an allocation of {largest} bytes, peak {peak}, for {} input bytes", names[i % seeds.len()], bytes.len());
        if peak > worst_peak {
            worst_peak = peak;
            worst = format!("mutation {i} of {}: {peak} bytes for {} ({})", names[i % seeds.len()], bytes.len(), match &result { Ok(Err(e)) => e.as_str(), _ => "read" });
        }
    }
    eprintln!("{cases} mutated checkpoints in {:.1} s: {ok} read, {rejected} refused; largest peak of live memory: {worst}", start.elapsed().as_secs_f64());
    for (k, n) in &kinds {
        eprintln!("{n:6} {k}");
    }
    assert!(rejected > cases / 4 && ok > cases / 20, "{ok} read, {rejected} refused");
}
