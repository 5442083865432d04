//! `mvdit sample --prompt --weights`: a DiT held in 16 bits (bf16 or f16, unpacked to f32 stage
//! by stage) gives the same latents, bit for bit, as the same weights held in f32, on the CPU
//! and on the GPU backends; `auto` holds a 16-bit file in 16 bits; f16 refuses values outside
//! its range.

use mvdit_model::TensorFile;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mvdit-cli-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn mvdit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mvdit"))
        .args(args)
        .output()
        .expect("run mvdit")
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "mvdit failed: {err}");
    err
}

/// The t2i fixture's DiT converted to `dtype` (with its config in the metadata); `tag` keeps
/// the files of tests running at once apart.
fn dit_in(dtype: &str, tag: &str) -> PathBuf {
    let dir = mvdit_tests::golden_dir().join("t2i");
    let f = mvdit_model::WeightFile::open(&dir.join("dit.safetensors")).unwrap();
    let cfg = scratch(&format!("config-{dtype}-{tag}.json"));
    std::fs::write(&cfg, &f.metadata()["config"]).unwrap();
    let out = scratch(&format!("dit-{dtype}-{tag}.safetensors"));
    let (pt, c, o) = (
        dir.join("dit.pt"),
        cfg.to_str().unwrap().to_string(),
        out.to_str().unwrap().to_string(),
    );
    ok(&mvdit(&[
        "convert",
        pt.to_str().unwrap(),
        "--config",
        &c,
        "--dtype",
        dtype,
        "--out",
        &o,
    ]));
    out
}

/// Samples the fixture's prompts from `ckpt` with `extra` flags → (final latents, stderr).
fn sample(ckpt: &Path, tag: &str, extra: &[&str]) -> (Vec<f32>, String) {
    let dir = mvdit_tests::golden_dir().join("t2i");
    let frozen = mvdit_tests::frozen_suite::frozen_dir();
    let out = scratch(tag);
    let (te, vae, noise) = (
        frozen.join("qwen3-tiny"),
        frozen.join("ae-a.safetensors"),
        dir.join("noise.safetensors"),
    );
    let mut args = vec![
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--text-encoder",
        te.to_str().unwrap(),
    ];
    args.extend_from_slice(&[
        "--vae",
        vae.to_str().unwrap(),
        "--prompt",
        "a red square",
        "--prompt",
        "",
    ]);
    args.extend_from_slice(&[
        "--noise",
        noise.to_str().unwrap(),
        "--steps",
        "3",
        "--size",
        "32",
        "--out",
        out.to_str().unwrap(),
    ]);
    args.extend_from_slice(extra);
    let err = ok(&mvdit(&args));
    (
        TensorFile::read(&out.join("latents.safetensors"))
            .unwrap()
            .tensors["latent"]
            .data
            .clone(),
        err,
    )
}

fn same_in_16_bits_as_in_f32(backend: &[&str]) {
    for dtype in ["bf16", "f16"] {
        let ckpt = dit_in(dtype, &backend.join("-"));
        let tag = |t: &str| format!("{dtype}-{t}-{}", backend.join("-"));
        let (f32_held, err) = sample(
            &ckpt,
            &tag("f32"),
            &[&["--weights", "f32"], backend].concat(),
        );
        assert!(err.contains("whole in f32"), "{err}");
        // auto: the file's dtype; 500KB: the 16-bit weights and one unpacked stage fit, the stages are many.
        let (packed, err) = sample(
            &ckpt,
            &tag("auto"),
            &[&["--max-memory", "500KB"], backend].concat(),
        );
        assert!(err.contains(&format!("whole in {dtype}")), "{err}");
        let stages: usize = err
            .split(" stages per pass")
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(stages > 1, "{err}");
        assert_eq!(
            packed, f32_held,
            "{dtype} weights unpacked per stage change no bit"
        );
        let (whole, _) = sample(
            &ckpt,
            &tag("explicit"),
            &[&["--weights", dtype], backend].concat(),
        );
        assert_eq!(whole, f32_held);
    }
}

#[test]
fn sixteen_bit_weights_give_the_f32_latents_on_cpu() {
    same_in_16_bits_as_in_f32(&[]);
}

#[test]
fn sixteen_bit_weights_give_the_f32_latents_on_wgpu() {
    mvdit_tests::gpu!(mvdit_backend_wgpu::Wgpu::new(None));
    same_in_16_bits_as_in_f32(&["--backend", "wgpu"]);
}

#[test]
fn sixteen_bit_weights_give_the_f32_latents_on_vulkan() {
    mvdit_tests::gpu!(mvdit_backend_vulkan::Vulkan::new(None));
    same_in_16_bits_as_in_f32(&["--backend", "vulkan"]);
}

/// An f32 file rounded to bf16 on loading: close to the f32 run, not equal; and the reference
/// DiT in f16 when a weight is outside f16's range is refused naming the tensor.
#[test]
fn rounding_to_16_bits_on_loading() {
    let f32_file = mvdit_tests::golden_dir()
        .join("t2i")
        .join("dit.safetensors");
    let (exact, err) = sample(&f32_file, "rounding-f32", &[]);
    assert!(
        err.contains("whole in f32"),
        "auto keeps an f32 file in f32: {err}"
    );
    let (rounded, err) = sample(&f32_file, "rounding-bf16", &["--weights", "bf16"]);
    assert!(err.contains("whole in bf16"), "{err}");
    let e = mvdit_tests::rel_err(&rounded, &exact);
    assert!(
        e > 0.0 && e < 5e-2,
        "bf16 rounding moved the latents by {e:.3e}"
    );
    // Streamed (the weights exceed --max-memory): the same rounding, the same latents.
    let (streamed, err) = sample(&f32_file, "rounding-bf16-streamed", &["--weights", "bf16", "--max-memory", "100KB"]);
    assert!(err.contains("streamed") && err.contains("rounded to bf16"), "{err}");
    assert_eq!(streamed, rounded);

    let mut big = TensorFile::read(&f32_file).unwrap();
    let name = "blocks.0.ffn.w2.weight".to_string();
    big.tensors.get_mut(&name).unwrap().data[0] = 1.0e5;
    let path = scratch("big.safetensors");
    big.write(&path).unwrap();
    let out = scratch("refused");
    let o = mvdit(&[
        "sample",
        "--checkpoint",
        path.to_str().unwrap(),
        "--weights",
        "f16",
        "--prompt",
        "x",
        "--text-encoder",
        "none",
        "--vae",
        "none",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("`{name}`")) && err.contains("f16's range"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!out.exists(), "nothing written");
}

/// `eval --weights bf16` gives what f32 eval gives on the checkpoint rounded to bf16 by hand.
#[test]
fn eval_rounds_the_weights_to_the_dtype_asked() {
    let case = mvdit_tests::GOLDEN_CASES[0];
    let model = mvdit_tests::golden_dir().join(format!("{case}.model.safetensors"));
    let inputs = mvdit_tests::golden_dir().join(format!("{case}.case.safetensors"));
    let mut rounded = TensorFile::read(&model).unwrap();
    for t in rounded.tensors.values_mut() {
        let bits = mvdit_core::dtype::to_bits(&t.data, mvdit_core::dtype::Dtype::Bf16).unwrap();
        mvdit_core::dtype::unpack_into(&bits, mvdit_core::dtype::Dtype::Bf16, &mut t.data);
    }
    let by_hand = scratch("eval-rounded.safetensors");
    rounded.write(&by_hand).unwrap();
    let run = |ckpt: &Path, extra: &[&str], tag: &str| {
        let out = scratch(tag);
        let mut args = vec!["eval", "--checkpoint", ckpt.to_str().unwrap(), "--inputs", inputs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--grad"];
        args.extend_from_slice(extra);
        ok(&mvdit(&args));
        TensorFile::read(&out).unwrap()
    };
    let (a, b, f) = (run(&model, &["--weights", "bf16"], "eval-a"), run(&by_hand, &[], "eval-b"), run(&model, &[], "eval-f"));
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (name, t) in &a.tensors {
        assert_eq!(t.data, b.tensors[name].data, "{name}");
    }
    assert_ne!(a.tensors["output.velocity"].data, f.tensors["output.velocity"].data, "rounding changes the numbers");
}

/// `bench --forward-only --weights bf16` times the 16-bit model; without --forward-only it is refused.
#[test]
fn bench_times_sixteen_bit_forwards_only() {
    let w = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/small.json");
    let w = w.to_str().unwrap();
    let base = ["bench", "--config", w, "--batch", "1", "--steps", "1", "--warmup", "0", "--threads", "1"];
    let o = mvdit(&[&base[..], &["--forward-only", "--weights", "bf16"]].concat());
    ok(&o);
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(line["weights"], "bf16", "{line}");
    assert!(line["median_s"].as_f64().unwrap() > 0.0);
    let o = mvdit(&[&base[..], &["--weights", "f16"]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--forward-only") && err.trim().lines().count() == 1, "{err}");
    let o = mvdit(&["bench", "--gemm", "8,8,8", "--weights", "bf16"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--gemm") && err.trim().lines().count() == 1, "{err}");
}

/// `--weights` without `--prompt` is refused in one line (class-conditional sampling is f32).
#[test]
fn class_sampling_refuses_weights() {
    let out = scratch("class-refused");
    let o = mvdit(&["sample", "--checkpoint", "nothing.safetensors", "--weights", "bf16", "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--weights") && err.trim().lines().count() == 1, "{err}");
    assert!(!out.exists());
}
