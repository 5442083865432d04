//! The `.pt` fixtures of tests/golden/pt/ (written by scripts/reference/make_pt.py with
//! torch.save): good ones read back to g1-ctxproj's tensors exactly (f32) or as rounded (16-bit),
//! bad and hostile ones refused with a message that says why.

use mvdit_model::pt::PtFile;
use mvdit_model::{load_checkpoint, TensorFile};
use std::path::PathBuf;

fn golden(name: &str) -> PathBuf {
    let dir = std::env::var_os("MVDIT_GOLDEN_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden"));
    dir.join(name)
}

fn reference() -> TensorFile {
    TensorFile::read(&golden("g1-ctxproj.model.safetensors")).unwrap()
}

fn round(v: f32, dtype: &str) -> f32 {
    match dtype {
        "bf16" => half::bf16::from_f32(v).to_f32(),
        "f16" => half::f16::from_f32(v).to_f32(),
        _ => v,
    }
}

#[test]
fn good_checkpoints_hold_the_reference_tensors() {
    let want = reference();
    for (file, dtype, ones) in [("plain.pt", "f32", true), ("nested-model.pt", "f32", true), ("state-dict-params.pt", "f32", false), ("bf16.pt", "bf16", true), ("f16-views.pt", "f16", false)] {
        let pt = PtFile::open(&golden(&format!("pt/{file}"))).unwrap_or_else(|e| panic!("{file}: {e}"));
        for (name, w) in &want.tensors {
            let got = pt.get(name).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(got.shape, w.shape, "{file}: {name}");
            let exp: Vec<u32> = w.data.iter().map(|&v| round(v, dtype).to_bits()).collect();
            assert_eq!(got.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), exp, "{file}: {name}");
        }
        let extra: Vec<&str> = pt.names().filter(|n| !want.tensors.contains_key(*n)).collect();
        if ones {
            // the released model's constant gains: 2 input norms + 4 per block
            assert_eq!(extra.len(), 2 + 4 * 2, "{file}: {extra:?}");
            for n in extra {
                assert!(pt.get(n).unwrap().data.iter().all(|&v| v == 1.0), "{file}: {n}");
            }
        } else {
            assert!(extra.is_empty(), "{file}: {extra:?}");
        }
    }
}

#[test]
fn tensors_are_slices_of_their_storage() {
    let pt = PtFile::open(&golden("pt/f16-views.pt")).unwrap();
    let infos = pt.tensors();
    let storages: std::collections::BTreeSet<&str> = infos.values().map(|t| t.storage.as_str()).collect();
    assert_eq!(storages.len(), 1, "one shared storage: {storages:?}");
    let offsets: std::collections::BTreeSet<usize> = infos.values().map(|t| t.offset).collect();
    assert_eq!(offsets.len(), infos.len(), "each view at its own offset");
    let t = pt.info("final_proj.weight").unwrap();
    assert_eq!((t.shape.as_slice(), t.stride.as_slice()), (&[16usize, 32][..], &[32usize, 1][..]));
    assert_eq!(pt.bytes("final_proj.weight").unwrap().len(), 16 * 32 * 2);
}

#[test]
fn load_checkpoint_reads_a_pt_with_a_config() {
    let want = reference();
    let cfg = mvdit_model::checkpoint::parse_config(&want.metadata["config"], "g1").unwrap();
    let ck = load_checkpoint(&golden("pt/nested-model.pt"), Some(&cfg)).unwrap();
    let from_st = load_checkpoint(&golden("g1-ctxproj.model.safetensors"), None).unwrap();
    assert_eq!(ck.params, from_st.params);
    let e = load_checkpoint(&golden("pt/plain.pt"), None).unwrap_err().0;
    assert!(e.contains("pass --config"), "{e}");
    let e = load_checkpoint(&golden("pt/legacy.pt"), Some(&cfg)).unwrap_err().0;
    assert!(e.contains("legacy.pt: a legacy (torch < 1.6"), "{e}");
}

fn refused(file: &str) -> String {
    let path = golden(&format!("pt/{file}"));
    let e = PtFile::open(&path).err().unwrap_or_else(|| panic!("{file} was accepted")).0;
    assert!(e.contains(file), "the message names the file: {e}");
    e
}

#[test]
fn hostile_pickles_are_refused_naming_the_global() {
    let e = refused("evil-os-system.pt");
    assert!(e.contains("refused pickle global `posix.system`") && e.contains("nothing was imported or run"), "{e}");
    let e = refused("evil-subprocess.pt");
    assert!(e.contains("refused pickle global `subprocess.call`"), "{e}");
}

#[test]
fn broken_files_are_refused_saying_why() {
    for (file, says) in [
        ("truncated.pt", "zip archive cannot be read"),
        ("short-storage.pt", "tensor `a`: storage shorter than its tensor"),
        ("non-contiguous.pt", "tensor `a`: not contiguous"),
        ("compressed.pt", "is compressed (deflate)"),
        ("legacy.pt", "legacy (torch < 1.6"),
    ] {
        let e = refused(file);
        assert!(e.contains(says), "{file}: {e}");
    }
    let e = PtFile::from_bytes(b"not a zip".to_vec(), "junk.pt").err().unwrap().0;
    assert!(e.starts_with("junk.pt: not a PyTorch checkpoint"), "{e}");
    let e = PtFile::open(&golden("pt/missing.pt")).err().unwrap().0;
    assert!(e.contains("cannot open"), "{e}");
}
