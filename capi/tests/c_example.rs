//! examples/t2i.c compiled with `cc` against the built libmvdit.so, run on the t2i golden
//! fixture, gives the latents and pixels of `mvdit sample --prompt ... --seed 0` bit for bit.

use mvdit_model::TensorFile;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory of libmvdit.so that this test's build made (target/<profile>/deps or its parent).
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    let up = deps.parent().unwrap().to_path_buf();
    [deps, up].into_iter().find(|d| d.join("libmvdit.so").is_file()).expect("libmvdit.so next to the test binary")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mvdit-capi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_c_example_matches_the_command_line() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = scratch("t2i");
    let exe = work.join("t2i");
    let lib = library_dir();
    let cc = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(here.join("examples/t2i.c"))
        .arg(format!("-I{}", here.join("include").display()))
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lmvdit")
        .output()
        .expect("cc");
    assert!(cc.status.success(), "cc: {}", String::from_utf8_lossy(&cc.stderr));

    let golden = mvdit_tests::golden_dir().join("t2i");
    let frozen = mvdit_tests::frozen_suite::frozen_dir();
    let (ckpt, te, vae) = (golden.join("dit.safetensors"), frozen.join("qwen3-tiny"), frozen.join("ae-a.safetensors"));
    let case = mvdit_model::WeightFile::open(&golden.join("case.safetensors")).unwrap();
    let meta = case.metadata();
    let prompts: Vec<String> = serde_json::from_str(&meta["prompts"]).unwrap();
    let (size, steps) = (meta["size"].clone(), meta["steps"].clone());
    let out = work.join("c");
    let run = Command::new(&exe).args([&ckpt, &te, &vae]).args([&size, &steps]).arg(&out).args(&prompts).output().unwrap();
    assert!(run.status.success(), "t2i: {}", String::from_utf8_lossy(&run.stderr));

    let cli_out = work.join("cli");
    let mut args: Vec<String> = ["mvdit", "sample", "--checkpoint"].map(String::from).to_vec();
    args.extend([ckpt.display().to_string(), "--text-encoder".into(), te.display().to_string(), "--vae".into(), vae.display().to_string()]);
    for p in &prompts {
        args.extend(["--prompt".into(), p.clone()]);
    }
    args.extend(["--size".into(), size.clone(), "--steps".into(), steps, "--seed".into(), "0".into(), "--out".into(), cli_out.display().to_string()]);
    assert_eq!(mvdit_cli::main_with(args), 0);

    let want = TensorFile::read(&cli_out.join("latents.safetensors")).unwrap();
    let bytes = std::fs::read(out.with_extension("latents")).unwrap();
    let got: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(got, want.tensors["latent"].data, "latents differ from the command line's");

    let s: usize = size.parse().unwrap();
    let ppm = std::fs::read(out.with_extension("ppm")).unwrap();
    let header = format!("P6\n{} {s}\n255\n", prompts.len() * s);
    assert!(ppm.starts_with(header.as_bytes()));
    let pixels = &ppm[header.len()..];
    let mut pngs: Vec<_> = std::fs::read_dir(&cli_out).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "png")).collect();
    pngs.sort();
    assert_eq!(pngs.len(), prompts.len());
    for (i, png) in pngs.iter().enumerate() {
        let img = image::open(png).unwrap().to_rgb8();
        for y in 0..s {
            let row = &pixels[(y * prompts.len() + i) * s * 3..][..s * 3];
            assert_eq!(row, &img.as_raw()[y * s * 3..][..s * 3], "{} row {y}", png.display());
        }
    }
}

#[test]
fn errors_come_back_as_a_status_and_a_message() {
    use std::ffi::{CStr, CString};
    let missing = CString::new("/nonexistent/dit.safetensors").unwrap();
    let p = unsafe { mvdit::mvdit_text_to_image_open(missing.as_ptr(), missing.as_ptr(), missing.as_ptr(), std::ptr::null()) };
    assert!(p.is_null());
    let msg = unsafe { CStr::from_ptr(mvdit::mvdit_last_error()) }.to_string_lossy().to_string();
    assert!(msg.contains("/nonexistent/dit.safetensors"), "{msg}");
    let bad = CString::new("tpu").unwrap();
    let backend = mvdit::MvditBackend { kind: bad.as_ptr(), ..mvdit::mvdit_backend_default() };
    let st = unsafe { mvdit::mvdit_class_sampler_open(missing.as_ptr(), std::ptr::null(), &backend, true) };
    assert!(st.is_null());
    let msg = unsafe { CStr::from_ptr(mvdit::mvdit_last_error()) }.to_string_lossy().to_string();
    assert!(msg.contains("tpu") && msg.contains("cpu, wgpu or vulkan"), "{msg}");
    let status = unsafe { mvdit::mvdit_text_to_image_sizes(std::ptr::null(), 1, 64, std::ptr::null_mut(), std::ptr::null_mut()) };
    assert_eq!(status, mvdit::MvditStatus::MVDIT_ERROR);
    unsafe { mvdit::mvdit_text_to_image_free(std::ptr::null_mut()) };

    // A buffer of the wrong length is refused before any work, naming it.
    let golden = mvdit_tests::golden_dir().join("t2i");
    let frozen = mvdit_tests::frozen_suite::frozen_dir();
    let c = |p: std::path::PathBuf| CString::new(p.to_str().unwrap()).unwrap();
    let (ckpt, te, vae) = (c(golden.join("dit.safetensors")), c(frozen.join("qwen3-tiny")), c(frozen.join("ae-a.safetensors")));
    let p = unsafe { mvdit::mvdit_text_to_image_open(ckpt.as_ptr(), te.as_ptr(), vae.as_ptr(), std::ptr::null()) };
    assert!(!p.is_null());
    let (mut bytes, mut floats) = (0usize, 0usize);
    assert_eq!(unsafe { mvdit::mvdit_text_to_image_sizes(p, 1, 32, &mut bytes, &mut floats) }, mvdit::MvditStatus::MVDIT_OK);
    assert_eq!(bytes, 32 * 32 * 3);
    let prompt = CString::new("a fox").unwrap();
    let prompts = [prompt.as_ptr()];
    let settings = mvdit::MvditSampleSettings { size: 32, steps: 1, ..mvdit::mvdit_sample_settings_default() };
    let mut short = vec![0u8; bytes - 1];
    let st = unsafe { mvdit::mvdit_text_to_image_generate(p, prompts.as_ptr(), 1, &settings, std::ptr::null(), 0, short.as_mut_ptr(), short.len(), std::ptr::null_mut(), 0) };
    assert_eq!(st, mvdit::MvditStatus::MVDIT_ERROR);
    let msg = unsafe { CStr::from_ptr(mvdit::mvdit_last_error()) }.to_string_lossy().to_string();
    assert!(msg.starts_with("images: a buffer of 3071 values for 3072"), "{msg}");
    assert!(short.iter().all(|&b| b == 0), "nothing written");
    let mut full = vec![0u8; bytes];
    let st = unsafe { mvdit::mvdit_text_to_image_generate(p, prompts.as_ptr(), 1, &settings, std::ptr::null(), 0, full.as_mut_ptr(), full.len(), std::ptr::null_mut(), 0) };
    assert_eq!(st, mvdit::MvditStatus::MVDIT_OK);
    assert!(full.iter().any(|&b| b != 0));
    // Step caching: a bad threshold is named; a good one samples.
    let bad = mvdit::MvditSampleSettings { cache_threshold: -1.0, ..settings };
    let st = unsafe { mvdit::mvdit_text_to_image_generate(p, prompts.as_ptr(), 1, &bad, std::ptr::null(), 0, full.as_mut_ptr(), full.len(), std::ptr::null_mut(), 0) };
    assert_eq!(st, mvdit::MvditStatus::MVDIT_ERROR);
    let msg = unsafe { CStr::from_ptr(mvdit::mvdit_last_error()) }.to_string_lossy().to_string();
    assert!(msg.contains("settings.cache_threshold must be 0 (off) or positive, got -1"), "{msg}");
    let cached = mvdit::MvditSampleSettings { cache_threshold: 0.05, steps: 3, ..settings };
    let st = unsafe { mvdit::mvdit_text_to_image_generate(p, prompts.as_ptr(), 1, &cached, std::ptr::null(), 0, full.as_mut_ptr(), full.len(), std::ptr::null_mut(), 0) };
    assert_eq!(st, mvdit::MvditStatus::MVDIT_OK);
    unsafe { mvdit::mvdit_text_to_image_free(p) };
}
