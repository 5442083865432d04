//! The frozen networks against PyTorch float64 references (`tests/golden/frozen/`, written by
//! `scripts/reference/make_frozen.py`), written once and stamped per backend:
//! `backend_frozen_tests!(ctor, tol: TOL)` expands to
//!
//! * `ae_a`, `ae_b`: encode the case's images and decode its latents (ae-b's weights are
//!   bfloat16 on disk, ae-a's float32); every output within `TOL` relative error;
//! * `qwen3_right`, `qwen3_left`, `qwen3_long`, `qwen3_sharded`: the case's prompts through the
//!   tokenizer (ids and mask exactly as transformers gives them) and the encoder's last hidden
//!   states within `TOL`, padded positions and the all-padding empty prompt included.
//!
//! `TOL` is 1e-4 on the CPU backend and 1e-3 on the GPU backends.

use crate::rel_err;
use mvdit_core::Backend;
use mvdit_model::{Autoencoder, TensorFile, TextEncoder, WeightFile};
use std::path::PathBuf;

/// The folder of the frozen-network fixtures.
pub fn frozen_dir() -> PathBuf {
    crate::golden_dir().join("frozen")
}

fn case(name: &str) -> TensorFile {
    TensorFile::read(&frozen_dir().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn tensor<'a>(f: &'a TensorFile, name: &str) -> (&'a [f32], [usize; 4]) {
    let t = f.tensors.get(name).unwrap_or_else(|| panic!("case tensor {name}"));
    let mut dims = [1usize; 4];
    dims[4 - t.shape.len()..].copy_from_slice(&t.shape);
    (&t.data, dims)
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite values");
    let e = rel_err(got, want);
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:e}");
}

/// Encodes `{name}.case`'s images and decodes its latents with `{name}.safetensors`.
pub fn check_autoencoder<B: Backend>(be: &B, name: &str, tol: f64) {
    let w = WeightFile::open(&frozen_dir().join(format!("{name}.safetensors"))).unwrap_or_else(|e| panic!("{e}"));
    let ae = Autoencoder::load(be, &w).unwrap_or_else(|e| panic!("{e}"));
    let c = case(&format!("{name}.case.safetensors"));
    let (image, idims) = tensor(&c, "image");
    let (latent, ldims) = tensor(&c, "latent");
    let (decoded, _) = tensor(&c, "decoded");
    let got = ae.encode(be, image, idims).unwrap_or_else(|e| panic!("{e}"));
    assert_close(&format!("{name} encode"), &got, latent, tol);
    let got = ae.decode(be, latent, ldims).unwrap_or_else(|e| panic!("{e}"));
    assert_close(&format!("{name} decode"), &got, decoded, tol);
}

/// A text case: the prompts, `input_ids` and `attention_mask` ([B, L] int64 in the file) and
/// `last_hidden_state` [B, L, E].
struct TextCase {
    prompts: Vec<String>,
    shape: [usize; 2],
    ids: Vec<u32>,
    mask: Vec<f32>,
    hidden: Vec<f32>,
}

fn text_case(name: &str) -> TextCase {
    let bytes = std::fs::read(frozen_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let ints = |t: &str| -> (Vec<i64>, Vec<usize>) {
        let v = st.tensor(t).unwrap_or_else(|e| panic!("{name}: {t}: {e}"));
        assert_eq!(v.dtype(), safetensors::Dtype::I64, "{name}: {t}");
        (v.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(), v.shape().to_vec())
    };
    let (ids, shape) = ints("input_ids");
    let (mask, _) = ints("attention_mask");
    let h = st.tensor("last_hidden_state").unwrap_or_else(|e| panic!("{name}: {e}"));
    let hidden = h.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    let prompts = serde_json::from_str(&meta.metadata().as_ref().expect("metadata")["prompts"]).expect("prompts metadata");
    TextCase { prompts, shape: [shape[0], shape[1]], ids: ids.iter().map(|&v| v as u32).collect(), mask: mask.iter().map(|&v| v as f32).collect(), hidden }
}

/// The prompts of `case_name` through the encoder in `dir`.
pub fn check_text_encoder<B: Backend>(be: &B, dir: &str, case_name: &str, tol: f64) {
    let enc = TextEncoder::load(be, &frozen_dir().join(dir)).unwrap_or_else(|e| panic!("{e}"));
    let c = text_case(case_name);
    let out = enc.encode_prompts(be, &c.prompts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!([out.tokens.batch, out.tokens.len], c.shape, "{case_name}: batch shape");
    assert_eq!(out.tokens.ids, c.ids, "{case_name}: token ids");
    assert_eq!(out.tokens.mask, c.mask, "{case_name}: attention mask");
    assert_close(&format!("{case_name} last_hidden_state"), &out.context, &c.hidden, tol);
}

/// Stamps the suite for one backend: `mvdit_tests::backend_frozen_tests!(MyBackend::new(), tol: 1e-3);`
#[macro_export]
macro_rules! backend_frozen_tests {
    ($backend_ctor:expr, tol: $tol:expr) => {
        #[test]
        fn ae_a() {
            $crate::frozen_suite::check_autoencoder(&$backend_ctor, "ae-a", $tol);
        }
        #[test]
        fn ae_b() {
            $crate::frozen_suite::check_autoencoder(&$backend_ctor, "ae-b", $tol);
        }
        #[test]
        fn qwen3_right() {
            $crate::frozen_suite::check_text_encoder(&$backend_ctor, "qwen3-tiny", "qwen3-tiny.case.safetensors", $tol);
        }
        #[test]
        fn qwen3_left() {
            $crate::frozen_suite::check_text_encoder(&$backend_ctor, "qwen3-tiny-left", "qwen3-tiny-left.case.safetensors", $tol);
        }
        #[test]
        fn qwen3_long() {
            $crate::frozen_suite::check_text_encoder(&$backend_ctor, "qwen3-tiny", "qwen3-tiny-long.case.safetensors", $tol);
        }
        #[test]
        fn qwen3_sharded() {
            $crate::frozen_suite::check_text_encoder(&$backend_ctor, "qwen3-tiny-sharded", "qwen3-tiny.case.safetensors", $tol);
        }
    };
}
