//! wgpu against the CPU backend through the whole pipeline (`mvdit_tests::pipeline_parity`), and
//! a model split over two wgpu instances.

use mvdit_backend_cpu::Cpu;
use mvdit_backend_wgpu::Wgpu;
use mvdit_tests::rel_err;
use mvdit_train::config::preset;
use mvdit_train::run::load_data;
use mvdit_train::trainer::{Placement, TrainState};

#[test]
fn training_steps_and_sampling_match_the_cpu_backend() {
    mvdit_tests::pipeline_parity::training_and_sampling_match_the_cpu(&mvdit_tests::gpu!(Wgpu::new(None)), "wgpu");
}

/// `mvdit train --backend wgpu --devices 0,0`: two wgpu instances (two stages on one adapter,
/// the software device in CI) with 2 micro-batches train like the unsplit CPU model, and the
/// held-out loss and checkpoint come back through the stages.
#[test]
fn a_model_split_over_two_wgpu_instances_trains_like_the_cpu_backend() {
    let (cpu, g0, g1) = (Cpu::new(2), mvdit_tests::gpu!(Wgpu::new(None)), Wgpu::new(None).unwrap());
    let cfg = preset("tiny").unwrap();
    let (data, eval) = load_data(&cfg).unwrap();
    let mut a = TrainState::new(&cpu, cfg.clone(), data.class_names.clone()).unwrap();
    let mut b = TrainState::placed(Placement { devices: vec![&g0, &g1], micro_batches: 2 }, cfg, data.class_names.clone()).unwrap();
    let (mut la, mut lb) = (vec![], vec![]);
    for _ in 0..3 {
        la.push(mvdit_tests::step_loss(&mut a, &data) as f32);
        lb.push(mvdit_tests::step_loss(&mut b, &data) as f32);
    }
    la.push(a.eval_loss(&eval).unwrap() as f32);
    lb.push(b.eval_loss(&eval).unwrap() as f32);
    let e = rel_err(&lb, &la);
    assert!(e < 1e-3, "training and held-out losses differ: cpu {la:?} vs split wgpu {lb:?} ({e:e})");
    let (ca, cb) = (a.to_checkpoint().unwrap(), b.to_checkpoint().unwrap());
    assert_eq!(ca.tensors.keys().collect::<Vec<_>>(), cb.tensors.keys().collect::<Vec<_>>());
    for (name, t) in &ca.tensors {
        let e = rel_err(&cb.tensors[name].data, &t.data);
        assert!(e < 1e-2, "{name}: rel err {e:e}");
    }
}
