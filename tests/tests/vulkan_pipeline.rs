//! Vulkan against the CPU backend through the whole pipeline: a few training steps (losses
//! within 1e-3 relative) and sampling (images within 1e-3 relative), from identical initial
//! states. Skipped with a message when MVDIT_SKIP_GPU=1 and no Vulkan device opens.

use mvdit_backend_cpu::Cpu;
use mvdit_backend_vulkan::Vulkan;
use mvdit_tests::rel_err;
use mvdit_train::config::preset;
use mvdit_train::run::load_data;
use mvdit_train::sampler::{sample, Method, SampleOptions};
use mvdit_train::trainer::{StepOutcome, TrainState};

#[test]
fn training_steps_and_sampling_match_the_cpu_backend() {
    let vk = match Vulkan::new(None) {
        Ok(be) => be,
        Err(e) if std::env::var("MVDIT_SKIP_GPU").as_deref() == Ok("1") => {
            eprintln!("skipped (MVDIT_SKIP_GPU=1): {e}");
            return;
        }
        Err(e) => panic!("no Vulkan device: {e} (set MVDIT_SKIP_GPU=1 to skip the GPU tests)"),
    };
    let cpu = Cpu::new(2);
    let cfg = preset("tiny").unwrap();
    let (data, _) = load_data(&cfg).unwrap();
    let mut a = TrainState::new(&cpu, cfg.clone(), data.class_names.clone()).unwrap();
    let mut b = TrainState::new(&vk, cfg.clone(), data.class_names.clone()).unwrap();
    let (mut la, mut lb) = (vec![], vec![]);
    for _ in 0..4 {
        for (s, out) in [(a.train_step(&data).unwrap(), &mut la), (b.train_step(&data).unwrap(), &mut lb)] {
            match s {
                StepOutcome::Updated { loss, .. } => out.push(loss as f32),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let e = rel_err(&lb, &la);
    assert!(e < 1e-3, "training losses differ: cpu {la:?} vs vulkan {lb:?} ({e:e})");
    let opts = SampleOptions { steps: 4, cfg_scale: 2.0, shift: 4.0, seed: 3, method: Method::Euler };
    let labels = [0u32, 5, 9];
    let xa = sample(&cpu, &a.net, &a.conditioner(), &labels, [1, 8, 8], &opts).unwrap();
    let xb = sample(&vk, &b.net, &b.conditioner(), &labels, [1, 8, 8], &opts).unwrap();
    let e = rel_err(&xb, &xa);
    assert!(e < 1e-3, "samples differ: rel err {e:e}");
}
