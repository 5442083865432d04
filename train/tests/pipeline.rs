//! The training pipeline: resume exactness, checkpoint round trip, sampler behaviour.

use mvdit_backend_cpu::Cpu;
use mvdit_core::Backend;
use mvdit_model::{Dit, Keep, TensorFile};
use mvdit_train::config::preset;
use mvdit_train::rng::Rng;
use mvdit_train::observe::Quiet;
use mvdit_train::run::{read_metrics, train};
use mvdit_train::sampler::{guided_velocity, sample, time_grid, Conditioner, Labels, Method, SampleOptions};
use mvdit_train::trainer::{Placement, TrainState};
use std::sync::atomic::AtomicBool;

fn losses(run: &std::path::Path) -> Vec<(f64, f64)> {
    read_metrics(run).0
}

#[test]
fn resumed_run_logs_exactly_the_losses_of_an_uninterrupted_run() {
    let be = Cpu::new(2);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let stop = AtomicBool::new(false);
    let mut cfg = preset("tiny").unwrap();
    cfg.steps = 6;
    train(&be, &a, cfg.clone(), false, &stop, &mut Quiet).unwrap();
    cfg.steps = 3;
    train(&be, &b, cfg.clone(), false, &stop, &mut Quiet).unwrap();
    cfg.steps = 6;
    train(&be, &b, cfg.clone(), true, &stop, &mut Quiet).unwrap();
    let (la, lb) = (losses(&a), losses(&b));
    assert_eq!(la.len(), 6);
    assert_eq!(la, lb, "losses differ after resume");
    let last = |run: &std::path::Path| TensorFile::read(&run.join("checkpoints/step-00000006.safetensors")).unwrap();
    let (ca, cb) = (last(&a), last(&b));
    assert_eq!(ca.tensors, cb.tensors, "final weights, EMA and optimizer state differ after resume");
    // A run directory with checkpoints is not silently overwritten.
    let e = train(&be, &a, cfg, false, &stop, &mut Quiet).unwrap_err();
    assert!(e.0.contains("--resume"), "{e}");
}

#[test]
fn checkpoint_round_trip_restores_the_whole_state() {
    let be = Cpu::new(1);
    let cfg = preset("tiny").unwrap();
    let (train_set, _) = mvdit_train::run::load_data(&cfg).unwrap();
    let mut s = TrainState::new(&be, cfg, train_set.class_names.clone()).unwrap();
    s.train_step(&train_set).unwrap();
    s.train_step(&train_set).unwrap();
    let bytes = s.to_checkpoint().unwrap().to_bytes().unwrap();
    let file = TensorFile::from_bytes(&bytes).unwrap();
    let mut r = TrainState::from_checkpoint(&be, file.clone(), std::path::Path::new("mem")).unwrap();
    assert_eq!(r.to_checkpoint().unwrap(), file);
    assert_eq!((r.step, r.table.as_ref().unwrap().opt.step, r.rng.clone()), (s.step, s.table.as_ref().unwrap().opt.step, s.rng.clone()));
    // Both continue identically.
    let (x, y) = (s.train_step(&train_set).unwrap(), r.train_step(&train_set).unwrap());
    assert_eq!(x, y);
}

#[test]
fn a_split_state_writes_the_checkpoint_layout_and_restores_split_or_whole() {
    let (a, b, whole) = (Cpu::new(1), Cpu::new(1), Cpu::new(1));
    let cfg = preset("tiny").unwrap();
    let (train_set, eval_set) = mvdit_train::run::load_data(&cfg).unwrap();
    let place = Placement { devices: vec![&a, &b], micro_batches: 3 };
    let mut s = TrainState::placed(place, cfg, train_set.class_names.clone()).unwrap();
    assert_eq!(s.net.stages.iter().map(|st| st.model.blocks()).collect::<Vec<_>>(), vec![0..1, 1..2]);
    s.train_step(&train_set).unwrap();
    let file = s.to_checkpoint().unwrap();
    // Restored whole on one device and split again: the same file, the same next step.
    let mut w = TrainState::from_checkpoint(&whole, file.clone(), std::path::Path::new("mem")).unwrap();
    assert_eq!(w.to_checkpoint().unwrap(), file);
    let place = Placement { devices: vec![&b, &a], micro_batches: 3 };
    let mut r = TrainState::from_checkpoint_placed(place, file.clone(), std::path::Path::new("mem")).unwrap();
    assert_eq!(r.to_checkpoint().unwrap(), file);
    assert!(w.unsplit().is_ok() && r.unsplit().err().unwrap().0.contains("split over 2 devices"));
    let (x, y) = (s.train_step(&train_set).unwrap(), r.train_step(&train_set).unwrap());
    assert_eq!(x, y);
    w.train_step(&train_set).unwrap();
    // Held-out loss and samples go through the stages and agree with the whole model.
    let (ls, lw) = (s.eval_loss(&eval_set).unwrap(), w.eval_loss(&eval_set).unwrap());
    assert!(((ls - lw) / lw).abs() < 1e-6, "held-out loss split {ls} vs whole {lw}");
    let (gs, _) = s.sample_grid(1, 7).unwrap();
    let (gw, _) = w.sample_grid(1, 7).unwrap();
    let worst = gs.iter().zip(&gw).fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
    assert!(worst < 1e-4, "samples of the split and whole model differ by {worst}");
}

#[test]
fn a_placement_beyond_the_depth_or_batch_is_refused() {
    let be = Cpu::new(1);
    let cfg = preset("tiny").unwrap();
    let names = vec!["a".to_string()];
    let e = TrainState::placed(Placement { devices: vec![&be, &be, &be], micro_batches: 1 }, cfg.clone(), names.clone()).err().unwrap();
    assert!(e.0.contains("--devices: 3 devices for a model of 2 blocks"), "{e}");
    let e = TrainState::placed(Placement { devices: vec![&be], micro_batches: 9 }, cfg, names).err().unwrap();
    assert!(e.0.contains("--micro-batches must be in 1..=8"), "{e}");
}

#[test]
fn time_grid_runs_from_noise_to_data_bent_by_the_shift() {
    let g = time_grid(4, 1.0);
    assert_eq!(g, vec![1.0, 0.75, 0.5, 0.25, 0.0]);
    let g = time_grid(25, 4.0);
    assert_eq!((g[0], g[25]), (1.0, 0.0));
    assert!(g.windows(2).all(|w| w[0] > w[1]));
    assert!(g[12] > 0.5, "shift 4 keeps more steps at high noise: {}", g[12]);
}

/// A model whose velocity is its final bias everywhere (final weight zero).
fn constant_velocity_model(be: &Cpu, bias: f32) -> (Dit<Cpu>, mvdit_backend_cpu::CpuTensor) {
    let cfg = preset("tiny").unwrap();
    let mut params = mvdit_train::init::init_params(&cfg.model, 0.1, 1.0, &mut Rng::new(3));
    let l = mvdit_core::Layout::new(&cfg.model);
    params[l.final_w].iter_mut().for_each(|v| *v = 0.0);
    params[l.final_b].iter_mut().for_each(|v| *v = bias);
    let table = be.upload(&Rng::new(4).normals(11 * 32), &[11, 32]).unwrap();
    (Dit::from_host(be, cfg.model, params).unwrap(), table)
}

#[test]
fn euler_and_heun_integrate_the_velocity_from_t1_to_t0() {
    let be = Cpu::new(1);
    let (model, table) = constant_velocity_model(&be, 0.5);
    let cond = Conditioner { table: &table, context_tokens: 2, context_dim: 16 };
    let noise = Rng::new(9).normals(2 * 64);
    for method in [Method::Euler, Method::Heun] {
        let opts = SampleOptions { steps: 7, cfg_scale: 3.0, shift: 4.0, seed: 9, method, cfg_interval: None, cache_threshold: 0.0 };
        let x = sample(&be, &model, &cond, &[1, 2], [1, 8, 8], &opts).unwrap();
        // x_0 = x_1 + ∫ v d(−t) = noise + 0.5 over the unit interval.
        for (a, n) in x.iter().zip(&noise) {
            assert!((a - (n + 0.5)).abs() < 1e-5, "{method:?}: {a} vs {}", n + 0.5);
        }
    }
}

/// The tiny preset with random residual writers (every block changes its input) and a random
/// class table of 10 classes and the null class.
fn mixing_model(be: &Cpu) -> (Dit<Cpu>, mvdit_backend_cpu::CpuTensor) {
    let cfg = preset("tiny").unwrap();
    let mut params = mvdit_train::init::init_params(&cfg.model, 0.2, 1.0, &mut Rng::new(5));
    let l = mvdit_core::Layout::new(&cfg.model);
    for b in &l.blocks {
        params[b.wo] = Rng::new(6).normals(params[b.wo].len()).iter().map(|v| v * 0.2).collect();
        params[b.w2] = Rng::new(7).normals(params[b.w2].len()).iter().map(|v| v * 0.2).collect();
    }
    let table = be.upload(&Rng::new(8).normals(11 * 32), &[11, 32]).unwrap();
    (Dit::from_host(be, cfg.model, params).unwrap(), table)
}

#[test]
fn guidance_combines_conditional_and_null_predictions() {
    let be = Cpu::new(1);
    let (model, table) = mixing_model(&be);
    let cond = Conditioner { table: &table, context_tokens: 2, context_dim: 16 };
    let x = be.upload(&Rng::new(1).normals(3 * 64), &[3, 1, 8, 8]).unwrap();
    let labels = [0u32, 4, 9];
    let fwd = |lab: &[u32]| be.download(&model.forward(&be, &x, cond.context(&be, lab).unwrap(), Keep::Nothing).unwrap().0).unwrap();
    let (vc, vu) = (fwd(&labels), fwd(&[10, 10, 10]));
    assert!(vc.iter().zip(&vu).any(|(a, b)| (a - b).abs() > 1e-3), "the class must matter");
    let v1 = be.download(&guided_velocity(&be, &model, &Labels { cond: &cond, labels: &labels }, &x, 1.0).unwrap()).unwrap();
    assert_eq!(v1, vc, "scale 1 is the conditional prediction");
    let v3 = be.download(&guided_velocity(&be, &model, &Labels { cond: &cond, labels: &labels }, &x, 3.0).unwrap()).unwrap();
    for ((g, c), u) in v3.iter().zip(&vc).zip(&vu) {
        assert!((g - (u + 3.0 * (c - u))).abs() < 1e-4, "{g} vs {}", u + 3.0 * (c - u));
    }
}

/// Fine-tuning (`init`): the fresh state starts from the checkpoint's model weights, the EMA too,
/// with the optimiser at step 0; a checkpoint of another model shape is refused naming a tensor.
#[test]
fn init_starts_from_a_checkpoints_weights_with_a_fresh_optimiser() {
    let be = Cpu::new(1);
    let cfg = preset("tiny").unwrap();
    let (train_set, _) = mvdit_train::run::load_data(&cfg).unwrap();
    let mut s = TrainState::new(&be, cfg.clone(), train_set.class_names.clone()).unwrap();
    for _ in 0..3 {
        s.train_step(&train_set).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trained.safetensors");
    s.to_checkpoint().unwrap().write(&path).unwrap();
    let trained = s.net.stages[0].model.to_host(&be).unwrap();
    let mut tuned_cfg = cfg.clone();
    tuned_cfg.init = Some(path.clone());
    let t = TrainState::new(&be, tuned_cfg, train_set.class_names.clone()).unwrap();
    assert_eq!(t.net.stages[0].model.to_host(&be).unwrap(), trained);
    assert_eq!(t.step, 0);
    let fresh = TrainState::new(&be, cfg.clone(), train_set.class_names.clone()).unwrap();
    assert_ne!(fresh.net.stages[0].model.to_host(&be).unwrap(), trained);
    let mut wider = cfg.clone();
    wider.model.hidden_size *= 2;
    wider.init = Some(path);
    let e = TrainState::new(&be, wider, train_set.class_names.clone()).err().unwrap().to_string();
    assert!(e.contains("--init") && e.contains("trained.safetensors") && e.contains("tensor `"), "{e}");
}

#[test]
fn step_caching_at_zero_is_exact_and_above_it_skips_blocks_within_its_threshold() {
    let be = Cpu::new(1);
    let (model, table) = mixing_model(&be);
    let cond = Conditioner { table: &table, context_tokens: 2, context_dim: 16 };
    let x = be.upload(&Rng::new(1).normals(2 * 64), &[2, 1, 8, 8]).unwrap();
    let ctx = || cond.context(&be, &[3, 7]).unwrap();
    let plain = be.download(&model.forward(&be, &x, ctx(), Keep::Nothing).unwrap().0).unwrap();
    let mut off = mvdit_model::step_cache::StepCache::new(0.0, 0);
    for _ in 0..2 {
        assert_eq!(be.download(&model.velocity_cached(&be, &x, ctx(), &mut off).unwrap()).unwrap(), plain, "threshold 0 computes every block");
    }
    assert_eq!((off.skipped, off.total), (0, 4));
    // The same input again under a generous threshold: every block's update is reused.
    let mut on = mvdit_model::step_cache::StepCache::new(0.5, 0);
    model.velocity_cached(&be, &x, ctx(), &mut on).unwrap();
    let again = be.download(&model.velocity_cached(&be, &x, ctx(), &mut on).unwrap()).unwrap();
    assert_eq!((on.skipped, on.total), (2, 4));
    assert!(again.iter().zip(&plain).all(|(a, b)| (a - b).abs() < 1e-5), "in + (out − in) is out");
    // A whole sampling run: fewer blocks computed, the result close to the exact one.
    let opts = SampleOptions { steps: 20, cfg_scale: 2.0, shift: 4.0, seed: 2, method: Method::Euler, cfg_interval: None, cache_threshold: 0.0 };
    let labels = [1u32, 5];
    let noise = Rng::new(2).normals(2 * 64);
    let exact = mvdit_train::sampler::sample_reported(&be, &model, &Labels { cond: &cond, labels: &labels }, &noise, [1, 8, 8], &opts).unwrap();
    assert_eq!(exact.1, None);
    let cached = mvdit_train::sampler::sample_reported(&be, &model, &Labels { cond: &cond, labels: &labels }, &noise, [1, 8, 8], &SampleOptions { cache_threshold: 0.05, ..opts }).unwrap();
    let skipped = cached.1.unwrap();
    assert!(skipped > 0.0 && skipped < 1.0, "{skipped}");
    let rel = mvdit_model::step_cache::relative_change(&cached.0, &exact.0);
    assert!(rel < 0.05, "cached run {rel} from the exact one, {skipped} of the blocks skipped");
    eprintln!("step caching at 0.05: {:.0}% of blocks skipped, {rel:.4} from the exact run", 100.0 * skipped);
}
