//! Training from `mvdit prepare` shards end to end on the tiny frozen fixtures: captions →
//! shards → text-conditional steps → a resumed run equal to an uninterrupted one, bit for bit
//! → `mvdit sample --prompt` from the checkpoint; the same with class sub-folders and
//! `mvdit sample --vae`; a shard set that disagrees with the config refused in one line.

use mvdit_model::TensorFile;
use mvdit_train::config::{preset, DataConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn frozen(name: &str) -> String {
    mvdit_tests::frozen_suite::frozen_dir().join(name).display().to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mvdit-cli-shards-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mvdit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mvdit")).args(args).output().expect("run mvdit")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "mvdit failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A 40×30 picture whose colours depend on `seed`.
fn picture(path: &Path, seed: u32) {
    let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6 + seed * 40) as u8, (y * 8 + seed * 17) as u8, ((x + y) * 3) as u8]));
    img.save(path).unwrap();
}

/// The tiny preset for latents [16, 4, 4] of `ae-a` at 32 px and contexts of width 64
/// (`qwen3-tiny`): 20 steps, checkpoints every 10.
fn config(dir: &Path) -> PathBuf {
    let mut cfg = preset("tiny").unwrap();
    cfg.model.in_channels = 16;
    cfg.model.context_dim = 64;
    cfg.data = DataConfig::new(4, 16, 0.2);
    cfg.steps = 20;
    cfg.checkpoint_every = 10;
    cfg.keep_checkpoints = 5;
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_string(&cfg).unwrap()).unwrap();
    path
}

/// Trains `steps` steps into `out` (resuming when asked).
fn train(cfg: &Path, shards: &Path, out: &Path, steps: &str, resume: bool) -> String {
    let mut args = vec!["train", "--config", cfg.to_str().unwrap(), "--data", shards.to_str().unwrap(), "--out", out.to_str().unwrap(), "--steps", steps, "--quiet"];
    if resume {
        args.push("--resume");
    }
    ok(&mvdit(&args))
}

/// The step-20 checkpoint of `run`.
fn last(run: &Path) -> PathBuf {
    run.join("checkpoints/step-00000020.safetensors")
}

/// Every tensor and metadata value of two checkpoints equal, bit for bit.
fn same_checkpoints(a: &Path, b: &Path) {
    let (a, b) = (TensorFile::read(a).unwrap(), TensorFile::read(b).unwrap());
    let names = |f: &TensorFile| f.tensors.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    for (name, t) in &a.tensors {
        let u = &b.tensors[name];
        assert!(t.shape == u.shape && t.data.iter().zip(&u.data).all(|(x, y)| x.to_bits() == y.to_bits()), "tensor `{name}` differs");
    }
    for key in ["step", "rng", "optim_step"] {
        assert_eq!(a.metadata[key], b.metadata[key], "{key}");
    }
}

/// 20 steps straight into `dir/whole`, and 10 then resumed to 20 into `dir/parts`: the same
/// checkpoint bit for bit and the same losses; returns the straight run.
fn whole_equals_resumed(dir: &Path, shards: &Path) -> PathBuf {
    let cfg = config(dir);
    let (whole, parts) = (dir.join("whole"), dir.join("parts"));
    train(&cfg, shards, &whole, "20", false);
    train(&cfg, shards, &parts, "10", false);
    train(&cfg, shards, &parts, "20", true);
    same_checkpoints(&last(&whole), &last(&parts));
    assert_eq!(losses(&whole), losses(&parts));
    whole
}

/// The train losses of metrics.jsonl by step.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

/// `n` pictures captioned by `caption(i)` in `dir/images`, prepared into `dir/shards` (shards of
/// `shard_size`) with the tiny autoencoder and text encoder at 32 px.
fn caption_shards(dir: &Path, n: u32, caption: impl Fn(u32) -> String, shard_size: &str) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..n {
        picture(&images.join(format!("img{i}.png")), i);
    }
    let caps = images.join("captions.jsonl");
    let lines: Vec<String> = (0..n).map(|i| serde_json::json!({"file": format!("img{i}.png"), "caption": caption(i)}).to_string()).collect();
    std::fs::write(&caps, lines.join("\n")).unwrap();
    let shards = dir.join("shards");
    let (te, ae) = (frozen("qwen3-tiny"), frozen("ae-a.safetensors"));
    let (img, cap, sh) = (images.to_str().unwrap(), caps.to_str().unwrap(), shards.to_str().unwrap());
    ok(&mvdit(&["prepare", "--images", img, "--captions", cap, "--vae", &ae, "--text-encoder", &te, "--size", "32", "--shard-size", shard_size, "--out", sh]));
    shards
}

#[test]
fn caption_shards_train_resume_exactly_and_sample_a_prompt() {
    let dir = scratch("captions");
    let shards = caption_shards(&dir, 9, |i| format!("picture number {i}{}", " again".repeat(i as usize % 4)), "4");
    let (te, ae) = (frozen("qwen3-tiny"), frozen("ae-a.safetensors"));
    let whole = whole_equals_resumed(&dir, &shards);
    assert_eq!(losses(&whole).len(), 20);
    // The run took its shapes and conditioning from the index: captions, no class table.
    let run_cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(whole.join("config.json")).unwrap()).unwrap();
    assert_eq!(run_cfg["data"]["captions"], true);
    let ix: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(shards.join("shards.json")).unwrap()).unwrap();
    let tokens = ix["shards"][0]["context_tokens"].as_u64().unwrap();
    assert!(ix["shards"].as_array().unwrap().iter().all(|s| s["context_tokens"].as_u64() == Some(tokens)), "one context length for the set: {ix}");
    assert_eq!(run_cfg["context_tokens"].as_u64(), Some(tokens));
    assert!(!TensorFile::read(&last(&whole)).unwrap().tensors.contains_key("cond.class_embed"));
    let evals = std::fs::read_to_string(whole.join("metrics.jsonl")).unwrap().lines().filter(|l| l.contains("\"eval\"")).count();
    assert_eq!(evals, 2, "a held-out loss at each checkpoint");

    let out = dir.join("sampled");
    let ck = last(&whole);
    let e = ok(&mvdit(&["sample", "--checkpoint", ck.to_str().unwrap(), "--text-encoder", &te, "--vae", &ae, "--prompt", "picture number 2", "--size", "32", "--steps", "3", "--out", out.to_str().unwrap()]));
    assert!(e.contains("EMA weights"), "{e}");
    assert!(out.join("0000-picture-number-2.png").is_file());
    assert_eq!(TensorFile::read(&out.join("latents.safetensors")).unwrap().tensors["latent"].shape, [1, 16, 4, 4]);
    // Sampled at the trained context length; a prompt longer than any training caption is refused.
    let long = "picture number 2 again ".repeat(8);
    let o = mvdit(&["sample", "--checkpoint", ck.to_str().unwrap(), "--text-encoder", &te, "--vae", &ae, "--prompt", &long, "--size", "32", "--steps", "1", "--out", dir.join("long").to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains(&format!("trained on captions of {tokens}")), "{e}");

    // A resume refuses a set that was prepared again in the same folder (here: another shuffle).
    let ix_path = shards.join("shards.json");
    let text = std::fs::read_to_string(&ix_path).unwrap().replace("\"shuffle_seed\": 0", "\"shuffle_seed\": 7");
    std::fs::write(&ix_path, text).unwrap();
    let o = mvdit(&["train", "--out", whole.to_str().unwrap(), "--resume", "--steps", "25", "--quiet"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("data.fingerprint") && e.contains("changed"), "{e}");
}

#[test]
fn class_shards_train_resume_exactly_and_sample_through_the_autoencoder() {
    let dir = scratch("classes");
    let images = dir.join("images");
    for (c, name) in ["cat", "dog"].iter().enumerate() {
        std::fs::create_dir_all(images.join(name)).unwrap();
        for i in 0..4 {
            picture(&images.join(name).join(format!("{i}.png")), (c * 4 + i) as u32);
        }
    }
    let shards = dir.join("shards");
    let ae = frozen("ae-a.safetensors");
    ok(&mvdit(&["prepare", "--images", images.to_str().unwrap(), "--vae", &ae, "--size", "32", "--shard-size", "3", "--flip", "--out", shards.to_str().unwrap()]));
    let whole = whole_equals_resumed(&dir, &shards);
    assert_eq!(TensorFile::read(&last(&whole)).unwrap().tensors["cond.class_embed"].shape, [3, 128]);

    let (ck, out) = (last(&whole), dir.join("sampled"));
    let o = mvdit(&["sample", "--checkpoint", ck.to_str().unwrap(), "--steps", "2", "--out", out.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.trim().lines().count() == 1 && e.contains("--vae"), "{e}");
    ok(&mvdit(&["sample", "--checkpoint", ck.to_str().unwrap(), "--vae", &ae, "--steps", "2", "--count", "1", "--out", out.to_str().unwrap()]));
    let png = image::open(out.join("class1_0.png")).unwrap();
    assert_eq!((png.width(), png.height()), (32, 32), "decoded to pixels");

    // `mvdit bench --data` times the trainer's step on batches read from the shards.
    let w = dir.join("workload.json");
    let workload = r#"{"in_channels": 16, "patch_size": 2, "image_size": 4, "hidden_size": 16, "depth": 2, "num_heads": 2, "mlp_hidden_dim": 32,
        "qkv_bias": false, "context_dim": 16, "context_tokens": 1, "rope_base": 10000}"#;
    std::fs::write(&w, workload).unwrap();
    let o = mvdit(&["bench", "--config", w.to_str().unwrap(), "--data", shards.to_str().unwrap(), "--batch", "4", "--steps", "2", "--warmup", "0", "--threads", "1"]);
    ok(&o);
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(line["data"].as_str(), shards.to_str());
    assert!(line["median_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_shard_set_that_disagrees_with_the_model_is_one_line() {
    let dir = scratch("mismatch");
    let images = dir.join("images");
    std::fs::create_dir_all(images.join("only")).unwrap();
    picture(&images.join("only/a.png"), 1);
    picture(&images.join("only/b.png"), 2);
    let shards = dir.join("shards");
    ok(&mvdit(&["prepare", "--images", images.to_str().unwrap(), "--vae", &frozen("ae-a.safetensors"), "--size", "32", "--out", shards.to_str().unwrap()]));
    let out = dir.join("run");
    // The tiny preset takes one grey channel; the latents have 16.
    let o = mvdit(&["train", "--preset", "tiny", "--data", shards.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.trim().lines().count() == 1, "{e}");
    assert!(e.contains("model.in_channels") && e.contains("16 channels") && e.contains("shards"), "{e}");
    assert!(!out.exists(), "nothing written");
    // A flipped byte in a shard is named before training reads it.
    let cfg = config(&dir);
    let shard = shards.join("shard-00000.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&shard, bytes).unwrap();
    let o = mvdit(&["train", "--config", cfg.to_str().unwrap(), "--data", shards.to_str().unwrap(), "--out", out.to_str().unwrap(), "--steps", "1", "--quiet"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("shard-00000.safetensors: checksum mismatch (shards.json says"), "{e}");
    assert!(!out.exists(), "nothing written");
    // A damaged index names the file and the field.
    let ix = shards.join("shards.json");
    let text = std::fs::read_to_string(&ix).unwrap().replace("\"latent_shape\"", "\"latent_shape_\"");
    std::fs::write(&ix, text).unwrap();
    let o = mvdit(&["train", "--preset", "tiny", "--data", shards.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("shards.json") && e.contains("latent_shape"), "{e}");
}

/// Fine-tuning from a converted release: `mvdit convert` of a `torch.save`d DiT (the t2i
/// fixture: 16 latent channels, contexts of width 64), then `train --init` on caption shards;
/// the step-0 checkpoint holds exactly the converted weights, and a model of another shape is
/// refused naming a tensor.
#[test]
fn init_from_a_converted_checkpoint_on_caption_shards() {
    let dir = scratch("init");
    let shards = caption_shards(&dir, 4, |i| format!("picture {i}"), "2048");
    let t2i = mvdit_tests::golden_dir().join("t2i");
    let model_json = mvdit_model::WeightFile::open(&t2i.join("dit.safetensors")).unwrap().metadata()["config"].clone();
    let model_cfg = dir.join("model.json");
    std::fs::write(&model_cfg, &model_json).unwrap();
    let converted = dir.join("converted.safetensors");
    ok(&mvdit(&["convert", t2i.join("dit.pt").to_str().unwrap(), "--config", model_cfg.to_str().unwrap(), "--out", converted.to_str().unwrap()]));
    // The tiny preset's trainer settings around the fixture's model.
    let mut cfg = preset("tiny").unwrap();
    cfg.model = serde_json::from_str(&model_json).unwrap();
    cfg.data = DataConfig::new(4, 16, 0.0);
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let run = dir.join("run");
    let conv = converted.to_str().unwrap();
    ok(&mvdit(&["train", "--config", cfg_path.to_str().unwrap(), "--data", shards.to_str().unwrap(), "--init", conv, "--steps", "0", "--out", run.to_str().unwrap()]));
    let (start, want) = (TensorFile::read(&run.join("checkpoints/step-00000000.safetensors")).unwrap(), TensorFile::read(&converted).unwrap());
    for (name, t) in &want.tensors {
        assert_eq!(start.tensors[name].data, t.data, "`{name}` starts from the converted weights");
        assert_eq!(start.tensors[&format!("ema.{name}")].data, t.data, "its EMA too");
    }
    ok(&mvdit(&["train", "--config", cfg_path.to_str().unwrap(), "--resume", "--steps", "3", "--out", run.to_str().unwrap()]));
    // A model of another width: refused naming the tensor, nothing trained.
    cfg.model.hidden_size *= 2;
    cfg.model.context_dim = 64;
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let other = dir.join("other");
    let o = mvdit(&["train", "--config", cfg_path.to_str().unwrap(), "--data", shards.to_str().unwrap(), "--init", conv, "--out", other.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("--init") && e.contains("tensor `"), "{e}");
}
