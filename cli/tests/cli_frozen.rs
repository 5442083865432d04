//! `mvdit encode-text` and `mvdit vae encode|decode` end to end on the PyTorch fixtures of
//! `tests/golden/frozen/`, and bad input giving one line naming the file and field, a non-zero
//! exit and no output file.

use mvdit_model::TensorFile;
use std::path::PathBuf;
use std::process::{Command, Output};

fn frozen(name: &str) -> String {
    mvdit_tests::frozen_suite::frozen_dir().join(name).display().to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mvdit-cli-frozen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn mvdit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mvdit")).args(args).output().expect("run mvdit")
}

fn ok(o: &Output) {
    assert!(o.status.success(), "mvdit failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// Fails with exactly one line on stderr that contains every one of `words`, and writes nothing at `out`.
fn refused(o: &Output, out: &PathBuf, words: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected a failure");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for w in words {
        assert!(err.contains(w), "`{w}` missing from: {err}");
    }
    assert!(!out.exists(), "{} was written", out.display());
}

#[test]
fn encode_text_writes_context_and_mask() {
    let out = scratch("ctx.safetensors");
    ok(&mvdit(&["encode-text", "--encoder", &frozen("qwen3-tiny"), "--prompt", "a red cat", "--prompt", "", "--out", out.to_str().unwrap()]));
    let f = TensorFile::read(&out).unwrap();
    let (ctx, mask) = (&f.tensors["context"], &f.tensors["mask"]);
    let l = mask.shape[1];
    assert_eq!(ctx.shape, [2, l, 64]);
    // The empty prompt is padding only; the first prompt has no padding (it is the longest).
    assert_eq!(mask.data[..l], vec![1.0; l][..]);
    assert_eq!(mask.data[l..], vec![0.0; l][..]);
    assert!(ctx.data.iter().all(|v| v.is_finite()));
}

#[test]
fn vae_round_trip_through_files_and_pngs() {
    let (lat, img, png) = (scratch("lat.safetensors"), scratch("img.safetensors"), scratch("png"));
    let case = frozen("ae-a.case.safetensors");
    ok(&mvdit(&["vae", "encode", "--vae", &frozen("ae-a.safetensors"), "--inputs", &case, "--out", lat.to_str().unwrap()]));
    let want = TensorFile::read(std::path::Path::new(&case)).unwrap();
    let got = TensorFile::read(&lat).unwrap();
    assert_eq!(got.tensors["latent"].shape, want.tensors["latent"].shape);
    assert!(mvdit_tests::rel_err(&got.tensors["latent"].data, &want.tensors["latent"].data) < 1e-4);
    ok(&mvdit(&["vae", "decode", "--vae", &frozen("ae-a.safetensors"), "--inputs", &case, "--out", img.to_str().unwrap()]));
    let dec = TensorFile::read(&img).unwrap();
    assert!(mvdit_tests::rel_err(&dec.tensors["image"].data, &want.tensors["decoded"].data) < 1e-4);
    ok(&mvdit(&["vae", "decode", "--vae", &frozen("ae-a.safetensors"), "--inputs", &case, "--png", png.to_str().unwrap()]));
    assert!(png.join("0000.png").is_file() && png.join("0001.png").is_file());
    // The PNGs back through the encoder as a folder of pictures (32×16 → centre crop 16×16 → 32).
    let back = scratch("back.safetensors");
    ok(&mvdit(&["vae", "encode", "--vae", &frozen("ae-a.safetensors"), "--images", png.to_str().unwrap(), "--size", "32", "--out", back.to_str().unwrap()]));
    let f = TensorFile::read(&back).unwrap();
    assert_eq!(f.tensors["latent"].shape, [2, 16, 4, 4]);
    assert_eq!(f.metadata["files"], r#"["0000.png","0001.png"]"#);
}

#[test]
fn bad_input_is_one_line_naming_the_file_and_field() {
    let out = scratch("never.safetensors");
    let o = out.to_str().unwrap();
    let ae = frozen("ae-a.safetensors");
    // Latents of another autoencoder (32 channels for a 16-channel one).
    refused(&mvdit(&["vae", "decode", "--vae", &ae, "--inputs", &frozen("ae-b.case.safetensors"), "--out", o]), &out, &["ae-b.case.safetensors", "`latent`", "32 channels"]);
    // A file without `image`.
    refused(&mvdit(&["vae", "encode", "--vae", &ae, "--inputs", &frozen("qwen3-tiny/model.safetensors"), "--out", o]), &out, &["model.safetensors", "missing tensor `image`"]);
    // Not an autoencoder.
    refused(&mvdit(&["vae", "encode", "--vae", &frozen("qwen3-tiny/model.safetensors"), "--inputs", &frozen("ae-a.case.safetensors"), "--out", o]), &out, &["model.safetensors", "encoder.down.0.block.0.conv1.weight"]);
    // A size the autoencoder cannot divide, and a four-channel image.
    for (shape, words) in [([1, 3, 12, 16], "not a multiple of the autoencoder's factor 8"), ([1, 4, 16, 16], "4 channels")] {
        let bad = scratch("bad-image.safetensors");
        let mut f = TensorFile::default();
        f.insert("image", mvdit_model::HostTensor::new(shape.to_vec(), vec![0.0; shape.iter().product()]));
        f.write(&bad).unwrap();
        refused(&mvdit(&["vae", "encode", "--vae", &ae, "--inputs", bad.to_str().unwrap(), "--out", o]), &out, &["bad-image.safetensors", "`image`", words]);
    }
    refused(&mvdit(&["vae", "encode", "--vae", &ae, "--images", &frozen(""), "--size", "30", "--out", o]), &out, &["--size 30"]);
    // A directory without tokenizer.json.
    let dir = scratch("no-tokenizer");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(frozen("qwen3-tiny/config.json"), dir.join("config.json")).unwrap();
    refused(&mvdit(&["encode-text", "--encoder", dir.to_str().unwrap(), "--prompt", "a", "--out", o]), &out, &["no-tokenizer", "tokenizer.json"]);
    refused(&mvdit(&["encode-text", "--encoder", &frozen("qwen3-tiny"), "--out", o]), &out, &["--prompt"]);
}

/// A tiny text-conditional DiT over ae-a's 16-channel latents and qwen3-tiny's 64-wide context.
fn tiny_text_dit() -> PathBuf {
    let cfg: mvdit_core::ModelConfig = serde_json::from_str(
        r#"{"in_channels":16,"patch_size":1,"hidden_size":32,"depth":2,"num_heads":2,
            "mlp_hidden_dim":64,"qkv_bias":false,"context_dim":64,"rope_base":10000}"#,
    )
    .unwrap();
    let params = mvdit_tests::test_params(&cfg, 7);
    let path = scratch("dit.safetensors");
    let ck = mvdit_model::Checkpoint { cfg, params, state: Default::default(), metadata: Default::default() };
    mvdit_model::save_checkpoint(&path, &ck).unwrap();
    path
}

#[test]
fn prompts_to_pngs_with_given_noise_are_reproducible() {
    let dit = tiny_text_dit();
    let noise = scratch("noise.safetensors");
    let mut f = TensorFile::default();
    let vals: Vec<f32> = (0..2 * 16 * 4 * 4).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    f.insert("noise", mvdit_model::HostTensor::new(vec![2, 16, 4, 4], vals));
    f.write(&noise).unwrap();
    let (frozen_te, vae) = (frozen("qwen3-tiny"), frozen("ae-a.safetensors"));
    let run = |out: &PathBuf, size: &str, extra: &[&str]| {
        let mut args = vec!["sample", "--checkpoint", dit.to_str().unwrap(), "--text-encoder", &frozen_te, "--vae", &vae, "--prompt", "a red cat", "--prompt", "two dogs"];
        args.extend_from_slice(&["--size", size, "--steps", "3", "--noise", noise.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        mvdit(&args)
    };
    let (a, b) = (scratch("t2i-a"), scratch("t2i-b"));
    ok(&run(&a, "32", &[]));
    ok(&run(&b, "32", &[]));
    let la = TensorFile::read(&a.join("latents.safetensors")).unwrap();
    assert_eq!(la.tensors["latent"].shape, [2, 16, 4, 4]);
    assert!(la.tensors["latent"].data.iter().all(|v| v.is_finite()));
    assert_eq!(la, TensorFile::read(&b.join("latents.safetensors")).unwrap(), "same noise, same latents");
    for name in ["0000-a-red-cat.png", "0001-two-dogs.png"] {
        assert_eq!(std::fs::read(a.join(name)).unwrap(), std::fs::read(b.join(name)).unwrap(), "{name}");
    }
    // Guidance matters: cfg 1 (conditional only) gives other latents.
    let c = scratch("t2i-c");
    ok(&run(&c, "32", &["--cfg", "1"]));
    assert_ne!(la.tensors["latent"], TensorFile::read(&c.join("latents.safetensors")).unwrap().tensors["latent"]);
    // Bad input: a size the autoencoder cannot take, noise of the wrong shape; nothing written.
    let d = scratch("t2i-d");
    refused(&run(&d, "36", &[]), &d, &["--size 36"]);
    refused(&mvdit(&["sample", "--checkpoint", dit.to_str().unwrap(), "--text-encoder", &frozen_te, "--vae", &vae, "--prompt", "x", "--size", "32", "--noise", noise.to_str().unwrap(), "--out", d.to_str().unwrap()]), &d, &["noise.safetensors", "`noise`"]);
    refused(&mvdit(&["sample", "--checkpoint", dit.to_str().unwrap(), "--vae", &vae, "--prompt", "x", "--out", d.to_str().unwrap()]), &d, &["--text-encoder"]);
}

/// The reference of `scripts/reference/make_t2i.py` (sample.py in float64 with transformers'
/// Qwen3, mvref's DiT and aeref's autoencoder) through `mvdit sample --prompt --noise`: final
/// latents within `tol`, PNG pixels at most one grey level apart.
fn text_to_image_matches_the_reference(backend: &[&str], tol: f64) {
    let dir = mvdit_tests::golden_dir().join("t2i");
    text_to_image_from(&dir.join("dit.safetensors"), backend, tol);
}

fn text_to_image_from(ckpt: &std::path::Path, backend: &[&str], tol: f64) {
    let dir = mvdit_tests::golden_dir().join("t2i");
    let bytes = std::fs::read(dir.join("case.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let prompts: Vec<String> = serde_json::from_str(&meta["prompts"]).unwrap();
    let want_lat: Vec<f32> = st.tensor("latent").unwrap().data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let want_img = st.tensor("image").unwrap();
    let [_, side, _, _]: [usize; 4] = want_img.shape().try_into().unwrap();
    let stem = ckpt.file_name().unwrap().to_string_lossy().to_string();
    let out = scratch(&format!("t2i-ref-{stem}-{}", backend.join("-")));
    let (te, vae, noise) = (frozen("qwen3-tiny"), frozen("ae-a.safetensors"), dir.join("noise.safetensors"));
    let mut args = vec!["sample", "--checkpoint", ckpt.to_str().unwrap(), "--text-encoder", &te, "--vae", &vae];
    for p in &prompts {
        args.extend_from_slice(&["--prompt", p]);
    }
    let o = out.to_str().unwrap();
    args.extend_from_slice(&["--noise", noise.to_str().unwrap(), "--steps", &meta["steps"], "--cfg", &meta["cfg"], "--shift", &meta["shift"], "--size", &meta["size"], "--out", o]);
    args.extend_from_slice(backend);
    ok(&mvdit(&args));
    let got = TensorFile::read(&out.join("latents.safetensors")).unwrap();
    let e = mvdit_tests::rel_err(&got.tensors["latent"].data, &want_lat);
    assert!(e <= tol, "final latents: relative error {e:.3e} > {tol:e}");
    let mut pngs: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "png")).collect();
    pngs.sort();
    assert_eq!(pngs.len(), prompts.len());
    let per = side * side * 3;
    for (i, p) in pngs.iter().enumerate() {
        let img = image::open(p).unwrap().to_rgb8();
        assert_eq!((img.width() as usize, img.height() as usize), (side, side));
        let want = &want_img.data()[i * per..(i + 1) * per];
        let worst = img.as_raw().iter().zip(want).map(|(&a, &b)| (a as i32 - b as i32).abs()).max().unwrap();
        assert!(worst <= 1, "{}: pixels {worst} grey levels apart", p.display());
    }
}

#[test]
fn text_to_image_matches_the_reference_on_cpu() {
    let npz = scratch("t2i.npz");
    text_to_image_matches_the_reference(&["--npz", npz.to_str().unwrap()], 1e-4);
    // The .npz holds the PNGs' pixels: uint8 arr_0 [2, 32, 32, 3].
    let mut z = zip::ZipArchive::new(std::fs::File::open(&npz).unwrap()).unwrap();
    let mut npy = Vec::new();
    std::io::Read::read_to_end(&mut z.by_name("arr_0.npy").unwrap(), &mut npy).unwrap();
    let hl = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    assert!(std::str::from_utf8(&npy[10..10 + hl]).unwrap().contains("'descr': '|u1', 'fortran_order': False, 'shape': (2, 32, 32, 3)"));
    let out = scratch(&format!("t2i-ref-dit.safetensors-{}", ["--npz", npz.to_str().unwrap()].join("-")));
    let mut pngs: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "png")).collect();
    pngs.sort();
    let pixels: Vec<u8> = pngs.iter().flat_map(|p| image::open(p).unwrap().to_rgb8().into_raw()).collect();
    assert_eq!(&npy[10 + hl..], &pixels[..]);
}

#[test]
fn text_to_image_matches_the_reference_on_wgpu() {
    mvdit_tests::gpu!(mvdit_backend_wgpu::Wgpu::new(None));
    text_to_image_matches_the_reference(&["--backend", "wgpu"], 1e-3);
}

#[test]
fn text_to_image_matches_the_reference_on_vulkan() {
    mvdit_tests::gpu!(mvdit_backend_vulkan::Vulkan::new(None));
    text_to_image_matches_the_reference(&["--backend", "vulkan"], 1e-3);
}

/// The same with the DiT streamed from its file in stages (its f32 weights, ~0.5 MB, exceed
/// --max-memory 100KB): the same latents and images.
#[test]
fn text_to_image_streamed_matches_the_reference() {
    text_to_image_matches_the_reference(&["--max-memory", "100KB"], 1e-4);
}

/// The DiT as `torch.save` wrote it (plain and nested under `model`): converted by `mvdit
/// convert` and sampled, and sampled from the `.pt` directly with `--config`; both give the
/// reference's latents and images.
#[test]
fn text_to_image_from_torch_save_files() {
    let dir = mvdit_tests::golden_dir().join("t2i");
    let f = mvdit_model::WeightFile::open(&dir.join("dit.safetensors")).unwrap();
    let cfg = scratch("t2i-config.json");
    std::fs::write(&cfg, &f.metadata()["config"]).unwrap();
    for pt in ["dit.pt", "dit-nested.pt"] {
        let converted = scratch(&format!("{pt}.safetensors"));
        ok(&mvdit(&["convert", dir.join(pt).to_str().unwrap(), "--config", cfg.to_str().unwrap(), "--out", converted.to_str().unwrap()]));
        text_to_image_from(&converted, &[], 1e-4);
    }
    text_to_image_from(&dir.join("dit-nested.pt"), &["--config", cfg.to_str().unwrap()], 1e-4);
}
