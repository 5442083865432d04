//! `mvdit prepare` end to end on the tiny frozen fixtures: a flat folder with captions and a
//! folder of class sub-folders to shards; shapes, labels, contexts, the empty prompt, equality
//! with `mvdit vae encode`, resuming, and bad input refused with one line.

use mvdit_model::{TensorFile, WeightFile};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn frozen(name: &str) -> String {
    mvdit_tests::frozen_suite::frozen_dir().join(name).display().to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mvdit-cli-prepare-{}", std::process::id())).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mvdit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mvdit")).args(args).output().expect("run mvdit")
}

fn ok(o: &Output) {
    assert!(o.status.success(), "mvdit failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// A 40×30 picture whose colours depend on `seed`.
fn picture(path: &Path, seed: u32) {
    let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6 + seed * 40) as u8, (y * 8 + seed * 17) as u8, ((x + y) * 3) as u8]));
    img.save(path).unwrap();
}

fn index(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("shards.json")).unwrap()).unwrap()
}

#[test]
fn captions_to_shards_resume_and_match_vae_encode() {
    let dir = scratch("flat");
    for i in 0..5 {
        picture(&dir.join(format!("img{i}.png")), i);
    }
    let caps = dir.join("captions.jsonl");
    let lines: Vec<String> = (0..5).map(|i| format!(r#"{{"file": "img{i}.png", "caption": "picture number {i}{}"}}"#, " again".repeat(i as usize))).collect();
    std::fs::write(&caps, lines.join("\n")).unwrap();
    let out = scratch("flat-out");
    let args = |out: &Path| -> Vec<String> {
        ["prepare", "--images", dir.to_str().unwrap(), "--captions", caps.to_str().unwrap(), "--vae", &frozen("ae-a.safetensors"), "--text-encoder", &frozen("qwen3-tiny"), "--size", "32", "--flip", "--shard-size", "4", "--dtype", "f32", "--out", out.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let run = |out: &Path| mvdit(&args(out).iter().map(|s| s.as_str()).collect::<Vec<_>>());
    ok(&run(&out));
    let ix = index(&out);
    assert_eq!(ix["count"], 10, "{ix}");
    assert_eq!(ix["kind"], "captions");
    assert_eq!(ix["shards"].as_array().unwrap().iter().map(|s| s["count"].as_u64().unwrap()).collect::<Vec<_>>(), [4, 4, 2]);
    let s0 = WeightFile::open(&out.join("shard-00000.safetensors")).unwrap();
    assert_eq!(s0.shape("latent").unwrap(), [4, 16, 4, 4]);
    let l = s0.shape("mask").unwrap()[1];
    assert_eq!(s0.shape("context").unwrap(), [4, l, 64]);
    let empty = WeightFile::open(&out.join("empty.safetensors")).unwrap();
    assert_eq!(empty.shape("context").unwrap(), [1, 64]);
    // The images are shuffled over the shards, each mirrored copy beside its image, and
    // samples.jsonl says where each sample came from.
    assert_eq!(ix["shuffle_seed"], 0);
    let sources: Vec<serde_json::Value> = std::fs::read_to_string(out.join("samples.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(sources.len(), 10);
    for pair in sources.chunks(2) {
        assert_eq!((pair[0]["file"].clone(), pair[0]["flip"].clone(), pair[1]["flip"].clone()), (pair[1]["file"].clone(), false.into(), true.into()));
    }
    let order: Vec<&str> = sources.iter().step_by(2).map(|s| s["file"].as_str().unwrap()).collect();
    assert_ne!(order, ["img0.png", "img1.png", "img2.png", "img3.png", "img4.png"], "shuffled");
    // Sample 0 is its file unmirrored: the same latent as `mvdit vae encode` of that image.
    let first = order[0];
    let single = scratch("single");
    picture(&single.join(first), first.trim_start_matches("img").trim_end_matches(".png").parse().unwrap());
    let lat = scratch("vae").join("lat.safetensors");
    ok(&mvdit(&["vae", "encode", "--vae", &frozen("ae-a.safetensors"), "--images", single.to_str().unwrap(), "--size", "32", "--out", lat.to_str().unwrap()]));
    let want = TensorFile::read(&lat).unwrap().tensors["latent"].data.clone();
    // (The same numbers up to the GEMMs' blocking: 4 images per call here, 1 there.)
    let got = s0.get("latent", &[None, None, None, None]).unwrap().data;
    assert!(mvdit_tests::rel_err(&got[..want.len()], &want) < 1e-5);
    // Resume: a removed shard is written again identically; finished ones are left alone.
    let before = std::fs::read(out.join("shard-00001.safetensors")).unwrap();
    let t0 = std::fs::metadata(out.join("shard-00000.safetensors")).unwrap().modified().unwrap();
    std::fs::remove_file(out.join("shard-00001.safetensors")).unwrap();
    ok(&run(&out));
    assert_eq!(std::fs::read(out.join("shard-00001.safetensors")).unwrap(), before);
    assert_eq!(std::fs::metadata(out.join("shard-00000.safetensors")).unwrap().modified().unwrap(), t0);
}

#[test]
fn class_folders_to_labelled_shards() {
    let dir = scratch("classes");
    for (c, name) in ["cat", "dog"].iter().enumerate() {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        for i in 0..3 {
            picture(&dir.join(name).join(format!("{i}.png")), (c * 3 + i) as u32);
        }
    }
    let out = scratch("classes-out");
    ok(&mvdit(&["prepare", "--images", dir.to_str().unwrap(), "--vae", &frozen("ae-a.safetensors"), "--size", "32", "--out", out.to_str().unwrap()]));
    let ix = index(&out);
    assert_eq!((ix["count"].as_u64(), ix["kind"].as_str()), (Some(6), Some("classes")));
    assert_eq!(ix["class_names"], serde_json::json!(["cat", "dog"]));
    let bytes = std::fs::read(out.join("shard-00000.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let labels: Vec<i64> = st.tensor("label").unwrap().data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    // Shuffled over the shards, each label its file's folder.
    let sources: Vec<serde_json::Value> = std::fs::read_to_string(out.join("samples.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let folders: Vec<i64> = sources.iter().map(|s| if s["file"].as_str().unwrap().starts_with("cat") { 0 } else { 1 }).collect();
    assert_eq!(labels, folders);
    let mut sorted = labels.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 0, 0, 1, 1, 1]);
    assert_ne!(labels, sorted, "shuffled");
    assert_eq!(st.tensor("latent").unwrap().dtype(), safetensors::Dtype::BF16);
}

#[test]
fn bad_input_is_one_line_and_writes_no_shard() {
    let dir = scratch("bad");
    picture(&dir.join("a.png"), 1);
    let caps = dir.join("captions.jsonl");
    std::fs::write(&caps, "{\"file\": \"a.png\", \"caption\": \"x\"}\n{\"file\": \"missing.png\", \"caption\": \"y\"}\n").unwrap();
    let out = scratch("bad-out");
    let (te, ae) = (frozen("qwen3-tiny"), frozen("ae-a.safetensors"));
    let cases: [(Vec<&str>, &[&str]); 3] = [
        (vec!["--captions", caps.to_str().unwrap(), "--text-encoder", &te], &["captions.jsonl line 2", "missing.png"]),
        (vec!["--captions", caps.to_str().unwrap()], &["--text-encoder"]),
        (vec!["--size", "30"], &["--size 30"]),
    ];
    for (extra, words) in cases {
        let mut args = vec!["prepare", "--images", dir.to_str().unwrap(), "--vae", &ae, "--out", out.to_str().unwrap()];
        args.extend(extra);
        let o = mvdit(&args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.trim().lines().count() == 1, "{e}");
        assert!(words.iter().all(|w| e.contains(w)), "{e}");
        assert!(!out.join("shard-00000.safetensors").exists() && !out.join("shards.json").exists());
    }
}
