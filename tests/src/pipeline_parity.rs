//! A GPU backend against the CPU backend through the whole pipeline: a few training steps of the
//! `tiny` preset from identical initial states (losses within 1e-3 relative), then guided
//! sampling from the trained states (images within 1e-3 relative). Stamped per GPU backend.

use crate::rel_err;
use mvdit_backend_cpu::Cpu;
use mvdit_train::config::preset;
use mvdit_train::depth_split::StageBackend;
use mvdit_train::run::load_data;
use mvdit_train::sampler::{sample, Method, SampleOptions};
use mvdit_train::trainer::TrainState;

/// Trains 4 steps on the CPU backend and on `gpu` (named `name` in messages) and compares.
pub fn training_and_sampling_match_the_cpu<B: StageBackend>(gpu: &B, name: &str) {
    let cpu = Cpu::new(2);
    let cfg = preset("tiny").unwrap();
    let (data, _) = load_data(&cfg).unwrap();
    let mut a = TrainState::new(&cpu, cfg.clone(), data.class_names.clone()).unwrap();
    let mut b = TrainState::new(gpu, cfg.clone(), data.class_names.clone()).unwrap();
    let (mut la, mut lb) = (vec![], vec![]);
    for _ in 0..4 {
        la.push(crate::step_loss(&mut a, &data) as f32);
        lb.push(crate::step_loss(&mut b, &data) as f32);
    }
    let e = rel_err(&lb, &la);
    assert!(e < 1e-3, "training losses differ: cpu {la:?} vs {name} {lb:?} ({e:e})");
    let opts = SampleOptions { steps: 4, cfg_scale: 2.0, shift: 4.0, seed: 3, method: Method::Euler, cfg_interval: None, cache_threshold: 0.0 };
    let labels = [0u32, 5, 9];
    let xa = sample(&cpu, &a.net, &a.conditioner().unwrap(), &labels, [1, 8, 8], &opts).unwrap();
    let xb = sample(gpu, &b.net, &b.conditioner().unwrap(), &labels, [1, 8, 8], &opts).unwrap();
    let e = rel_err(&xb, &xa);
    assert!(e < 1e-3, "samples differ between cpu and {name}: rel err {e:e}");
}
