//! Step caching on every residency of a model read from a file: whole, streamed in stages,
//! held in 16 bits. At threshold 0 a cached pass equals the plain one bit for bit; above it a
//! reused stage of a streamed model is not read from the file at all.

use mvdit_backend_cpu::Cpu;
use mvdit_core::dtype::Dtype;
use mvdit_core::{Backend, Layout, ModelConfig};
use mvdit_model::step_cache::{relative_change, StepCache};
use mvdit_model::{save_checkpoint, Checkpoint, Residency, WeightFile, WeightedDit};
use mvdit_train::init::{init_params_with, Init};
use mvdit_train::rng::Rng;
use mvdit_train::sampler::{sample_reported, Contexts, Method, SampleOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const DEPTH: usize = 12;

fn config() -> ModelConfig {
    serde_json::from_str(&format!(
        r#"{{"in_channels":4,"patch_size":1,"hidden_size":32,"depth":{DEPTH},"num_heads":2,
            "mlp_hidden_dim":64,"qkv_bias":true,"context_dim":16,"rope_base":10000}}"#
    ))
    .unwrap()
}

/// A random model (writers drawn, so every block changes the trunk) written to `path`; its
/// f32 bytes.
fn write_model(path: &Path) -> usize {
    let cfg = config();
    let init = Init { weight_std: 0.1, beta: 1.0, layerscale: 1.0, zero_writers: false, output_std: None, patch_std: None };
    let mut params = init_params_with(&cfg, &init, &mut Rng::new(3), &mut Rng::new(4));
    // Non-trivial merges: alpha 0 would drop every mean update.
    let layout = Layout::new(&cfg);
    for (s, p) in layout.specs.iter().zip(&mut params) {
        if s.name.ends_with(".alpha") {
            p.iter_mut().for_each(|v| *v = 0.5);
        }
    }
    save_checkpoint(path, &Checkpoint { cfg, params, state: Default::default(), metadata: Default::default() }).unwrap();
    4 * layout.numel()
}

/// [`write_model`] into a fresh directory: (the directory, the file, its f32 bytes).
fn model_file() -> (tempfile::TempDir, PathBuf, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let f32_bytes = write_model(&path);
    (dir, path, f32_bytes)
}

fn open(be: &Cpu, path: &Path, max_memory: usize, dtype: Option<Dtype>) -> WeightedDit<Cpu> {
    WeightedDit::open(be, WeightFile::open(path).unwrap(), None, max_memory, dtype).unwrap()
}

/// x [2, 4, 4, 4] and a context [2, 3, 16].
fn inputs(be: &Cpu, seed: u64) -> (<Cpu as Backend>::Tensor, Vec<f32>) {
    (be.upload(&Rng::new(seed).normals(2 * 64), &[2, 4, 4, 4]).unwrap(), Rng::new(seed + 100).normals(2 * 3 * 16))
}

/// Flips one byte in the middle of tensor `name`'s data in a safetensors file.
fn flip_byte_of(path: &Path, name: &str) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let span = header[name]["data_offsets"].as_array().unwrap();
    let at = 8 + n + (span[0].as_u64().unwrap() + span[1].as_u64().unwrap()) as usize / 2;
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at as u64)).unwrap();
    f.write_all(&[bytes[at] ^ 0x40]).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn every_residency_caches_exactly_at_zero_and_reuses_within_the_threshold() {
    let be = Cpu::new(1);
    let (_dir, path, f32_bytes) = model_file();
    let (x, ctx) = inputs(&be, 1);
    let context = || be.upload(&ctx, &[2, 3, 16]).unwrap();
    let whole = open(&be, &path, usize::MAX, None);
    let reference = be.download(&whole.velocity(&be, &x, context()).unwrap()).unwrap();
    let streamed = open(&be, &path, f32_bytes - 1, None);
    // Half the f32 bytes in bf16, plus one unpacked block per stage.
    let packed = open(&be, &path, 3 * f32_bytes / 4, Some(Dtype::Bf16));
    assert!(matches!(whole.residency, Residency::Whole(_)));
    assert!(matches!(&streamed.residency, Residency::Streamed(s, None) if s.len() > 2), "{}", streamed.describe());
    assert!(matches!(&packed.residency, Residency::Packed(m) if m.stages.len() > 2), "{}", packed.describe());
    for (name, model) in [("whole", &whole), ("streamed", &streamed), ("packed", &packed)] {
        let plain = be.download(&model.velocity(&be, &x, context()).unwrap()).unwrap();
        let mut off = StepCache::new(0.0, 0);
        for _ in 0..2 {
            assert_eq!(be.download(&model.velocity_cached(&be, &x, context(), &mut off).unwrap()).unwrap(), plain, "{name}: threshold 0");
        }
        assert_eq!((off.skipped, off.total), (0, 2 * DEPTH), "{name}: blocks counted, none skipped");
        // The same input again under a generous threshold: every unit's update is reused.
        let mut on = StepCache::new(0.5, 0);
        model.velocity_cached(&be, &x, context(), &mut on).unwrap();
        let again = be.download(&model.velocity_cached(&be, &x, context(), &mut on).unwrap()).unwrap();
        assert_eq!((on.skipped, on.total), (DEPTH, 2 * DEPTH), "{name}");
        assert!(relative_change(&again, &plain) < 1e-5, "{name}: in + (out − in) is out");
        if name != "packed" {
            assert_eq!(plain, reference, "{name}: the same f32 weights");
        }
    }
}

#[test]
fn a_reused_stage_of_a_streamed_model_is_not_read_from_the_file() {
    let be = Cpu::new(1);
    let (_dir, path, f32_bytes) = model_file();
    let model = open(&be, &path, f32_bytes - 1, None);
    let (x, ctx) = inputs(&be, 2);
    let context = || be.upload(&ctx, &[2, 3, 16]).unwrap();
    let mut cache = StepCache::new(0.5, 2);
    let first = be.download(&model.velocity_cached(&be, &x, context(), &mut cache).unwrap()).unwrap();
    // A block's weights damaged on disk after the first call: the reused stages never read it.
    flip_byte_of(&path, "blocks.3.ffn.w13.weight");
    let second = be.download(&model.velocity_cached(&be, &x, context(), &mut cache).unwrap()).unwrap();
    assert!(relative_change(&second, &first) < 1e-5);
    assert_eq!(cache.skipped, DEPTH);
    // A pass that reads every stage (the plain one, and the cache's refresh on its 3rd call)
    // meets the damage and names it.
    assert!(model.stages().is_some_and(|s| s.len() > 2 && s.len() < DEPTH), "stages of several blocks");
    for e in [model.velocity(&be, &x, context()).err(), model.velocity_cached(&be, &x, context(), &mut cache).err()] {
        let e = e.expect("the damaged tensor is read").to_string();
        assert!(e.contains("blocks.3.ffn.w13.weight"), "{e}");
    }
}

#[test]
fn a_streamed_sampling_run_skips_stages_and_stays_close_to_the_exact_one() {
    let be = Cpu::new(1);
    let (_dir, path, f32_bytes) = model_file();
    let model = open(&be, &path, f32_bytes - 1, None);
    let (cond, uncond) = (Rng::new(5).normals(2 * 3 * 16), vec![0.0; 2 * 3 * 16]);
    let contexts = Contexts { cond, uncond, shape: [2, 3, 16] };
    let noise = Rng::new(6).normals(2 * 64);
    let opts = SampleOptions { steps: 20, cfg_scale: 2.0, shift: 4.0, seed: 2, method: Method::Euler, cfg_interval: None, cache_threshold: 0.0 };
    let (exact, none) = sample_reported(&be, &model, &contexts, &noise, [4, 4, 4], &opts).unwrap();
    assert_eq!(none, None);
    let (cached, skipped) = sample_reported(&be, &model, &contexts, &noise, [4, 4, 4], &SampleOptions { cache_threshold: 0.05, ..opts }).unwrap();
    let skipped = skipped.unwrap();
    let rel = relative_change(&cached, &exact);
    assert!(skipped > 0.0 && skipped < 1.0 && rel < 0.05, "{:.0}% of the blocks skipped, {rel:.4} from the exact run", 100.0 * skipped);
}
