//! `mvdit convert` end to end on the `.pt` fixtures of tests/golden/pt/ (torch.save'd state
//! dicts of g1-ctxproj's tensors, see scripts/reference/make_pt.py): the output equals
//! g1-ctxproj.model.safetensors exactly (f32) or as rounded (16-bit); bad files give one line
//! naming the file (and tensor) and write nothing; `mvdit eval` takes a `.pt` directly.

use mvdit_model::{PtFile, TensorFile};
use std::path::{Path, PathBuf};
use std::process::Command;

fn golden(name: &str) -> PathBuf {
    mvdit_tests::golden_dir().join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mvdit-cli-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// An output path alone in its own folder (tests run in parallel; a failed write must leave the
/// folder empty).
fn out_path(tag: &str) -> PathBuf {
    let dir = scratch(&format!("out-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("out.safetensors")
}

fn mvdit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mvdit")).args(args).output().expect("run mvdit")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// g1-ctxproj's config as a file (the `.pt` files carry none), written once for all tests.
fn g1_config() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let p = scratch("g1.json");
        std::fs::write(&p, &reference().metadata["config"]).unwrap();
        p
    })
    .clone()
}

fn reference() -> TensorFile {
    TensorFile::read(&golden("g1-ctxproj.model.safetensors")).unwrap()
}

/// The safetensors header's dtype of every tensor.
fn dtypes(path: &Path) -> Vec<String> {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let h: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let mut d: Vec<String> = h.as_object().unwrap().iter().filter(|(k, _)| *k != "__metadata__").map(|(_, v)| v["dtype"].as_str().unwrap().to_string()).collect();
    d.dedup();
    d
}

/// `v` rounded to `dtype` (as torch's `.to(dtype)`), as f32 bits.
fn round(v: f32, dtype: &str) -> u32 {
    use mvdit_core::dtype::{decode_le, encode_le, Dtype};
    let d = match dtype {
        "BF16" => Dtype::Bf16,
        "F16" => Dtype::F16,
        _ => Dtype::F32,
    };
    decode_le(&encode_le(&[v], d), d)[0].to_bits()
}

fn convert(file: &str, extra: &[&str]) -> (PathBuf, std::process::Output) {
    let out = out_path(&format!("{file}{}", extra.join("")));
    let (input, cfg) = (golden(&format!("pt/{file}")), g1_config());
    let mut args = vec!["convert", s(&input), "--config", s(&cfg), "--out", s(&out)];
    args.extend_from_slice(extra);
    (out.clone(), mvdit(&args))
}

#[test]
fn converts_every_good_checkpoint_to_the_reference_tensors() {
    let want = reference();
    let cases = [
        ("plain.pt", &[][..], "F32", "F32"),
        ("nested-model.pt", &[], "F32", "F32"),
        ("state-dict-params.pt", &[], "F32", "F32"),
        ("bf16.pt", &[], "BF16", "BF16"),
        ("f16-views.pt", &["--dtype", "f32"], "F16", "F32"),
        ("plain.pt", &["--dtype", "bf16"], "BF16", "BF16"),
        ("plain.pt", &["--dtype", "f16"], "F16", "F16"),
    ];
    for (file, extra, rounded_to, stored_as) in cases {
        let (out, o) = convert(file, extra);
        assert!(o.status.success(), "{file} {extra:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(dtypes(&out), [stored_as], "{file} {extra:?}");
        let got = TensorFile::read(&out).unwrap();
        assert_eq!(got.tensors.keys().collect::<Vec<_>>(), want.tensors.keys().collect::<Vec<_>>(), "{file}: the constant buffers are left out");
        for (name, w) in &want.tensors {
            let g = &got.tensors[name];
            assert_eq!(g.shape, w.shape, "{file}: {name}");
            let exp: Vec<u32> = w.data.iter().map(|&v| round(v, rounded_to)).collect();
            assert_eq!(g.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), exp, "{file} {extra:?}: {name}");
        }
        let cfg = |f: &TensorFile| mvdit_model::checkpoint::parse_config(&f.metadata["config"], "config").unwrap();
        assert_eq!(cfg(&got), cfg(&want), "{file}");
        // a checkpoint as mvdit reads them: config from the metadata, every parameter present
        let ck = mvdit_model::load_checkpoint(&out, None).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(ck.params.len(), want.tensors.len());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("{} tensors", want.tensors.len())), "{err}");
    }
}

/// No output and no temporary file is left in the output's folder.
fn assert_nothing_written(out: &Path) {
    let left: Vec<String> = std::fs::read_dir(out.parent().unwrap()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn assert_refused(file: &str, extra: &[&str], says: &[&str]) {
    let (out, o) = convert(file, extra);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{file} was converted");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for w in says {
        assert!(err.contains(w), "{file}: `{w}` not in: {err}");
    }
    assert_nothing_written(&out);
}

#[test]
fn bad_and_hostile_checkpoints_are_refused_with_one_line_and_no_output() {
    assert_refused("evil-os-system.pt", &[], &["evil-os-system.pt", "refused pickle global `posix.system`"]);
    assert_refused("evil-subprocess.pt", &[], &["evil-subprocess.pt", "refused pickle global `subprocess.call`"]);
    assert_refused("truncated.pt", &[], &["truncated.pt", "zip archive cannot be read"]);
    assert_refused("short-storage.pt", &[], &["short-storage.pt", "tensor `a`", "storage shorter than its tensor"]);
    assert_refused("non-contiguous.pt", &[], &["tensor `a`", "not contiguous"]);
    assert_refused("compressed.pt", &[], &["is compressed (deflate)"]);
    assert_refused("legacy.pt", &[], &["legacy (torch < 1.6"]);
}

#[test]
fn a_config_that_does_not_match_names_the_tensor() {
    // the released model's config (a workload file) is a valid config: its first tensor differs
    let released = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/released-1000.json");
    let out = out_path("released");
    let o = mvdit(&["convert", s(&golden("pt/plain.pt")), "--config", s(&released), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("plain.pt: tensor `patch_embed.patch_proj.weight` has shape [32, 4, 2, 2], the config needs [1024, 128, 1, 1]"), "{err}");
    assert_nothing_written(&out);
    // one block more than the file has
    let mut cfg: serde_json::Value = serde_json::from_str(&reference().metadata["config"]).unwrap();
    cfg["depth"] = 3.into();
    let deeper = scratch("deeper.json");
    std::fs::write(&deeper, cfg.to_string()).unwrap();
    let o = mvdit(&["convert", s(&golden("pt/plain.pt")), "--config", s(&deeper), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("plain.pt: missing tensor `blocks.2.operator.q_proj.weight`"), "{err}");
    // one block fewer: block 1's tensors are unknown
    cfg["depth"] = 1.into();
    std::fs::write(&deeper, cfg.to_string()).unwrap();
    let o = mvdit(&["convert", s(&golden("pt/plain.pt")), "--config", s(&deeper), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("plain.pt: unknown tensor `blocks.1."), "{err}");
    assert_nothing_written(&out);
}

/// A copy of plain.pt with tensor `name`'s first element replaced.
fn plain_with(name: &str, value: f32, file: &str) -> PathBuf {
    let src = golden("pt/plain.pt");
    let range = PtFile::open(&src).unwrap().info(name).unwrap().bytes.clone();
    let mut b = std::fs::read(&src).unwrap();
    b[range.start..range.start + 4].copy_from_slice(&value.to_le_bytes());
    let p = scratch(file);
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn non_finite_values_and_non_unit_gains_are_refused() {
    for (name, value, file, says) in [
        ("final_proj.bias", f32::NAN, "nan.pt", "tensor `final_proj.bias` has a non-finite value at element 0"),
        ("blocks.1.qk_norm.key_norm.weight", 2.0, "gain.pt", "tensor `blocks.1.qk_norm.key_norm.weight` is a fixed gain in this config and must be all ones"),
    ] {
        let (input, cfg, out) = (plain_with(name, value, file), g1_config(), out_path(file));
        let o = mvdit(&["convert", s(&input), "--config", s(&cfg), "--out", s(&out)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(file) && err.contains(says) && err.trim().lines().count() == 1, "{err}");
        assert_nothing_written(&out);
    }
    // finite in f32, infinite in f16: refused when converting to f16
    let (input, cfg, out) = (plain_with("final_proj.bias", 1.0e6, "big.pt"), g1_config(), out_path("big"));
    let o = mvdit(&["convert", s(&input), "--config", s(&cfg), "--out", s(&out), "--dtype", "f16"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("non-finite value at element 0 (as F16)"), "{err}");
    assert_nothing_written(&out);
}

#[test]
fn eval_takes_a_pt_checkpoint_directly() {
    let case = golden("g1-ctxproj.case.safetensors");
    let out = out_path("eval");
    let (pt, cfg) = (golden("pt/nested-model.pt"), g1_config());
    let o = mvdit(&["eval", "--checkpoint", s(&pt), "--config", s(&cfg), "--inputs", s(&case), "--out", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = &TensorFile::read(&out).unwrap().tensors["output.velocity"];
    let want = &TensorFile::read(&case).unwrap().tensors["output.velocity"];
    let err: f64 = got.data.iter().zip(&want.data).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>().sqrt();
    let norm: f64 = want.data.iter().map(|&b| (b as f64).powi(2)).sum::<f64>().sqrt();
    assert!(err / norm < 1e-4, "rel err {}", err / norm);
    // without a config: the .pt has none
    let o = mvdit(&["eval", "--checkpoint", s(&pt), "--inputs", s(&case), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("nested-model.pt") && err.contains("--config"), "{err}");
}
