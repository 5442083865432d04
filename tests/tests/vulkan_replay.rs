//! Command-buffer replay on the Vulkan backend: from the second training step on, the steps
//! record the same commands on the same pooled buffers, and the device resubmits the command
//! buffers it built before instead of building them again. The numbers must not change:
//! training with replay gives bit-identical losses to training with `VulkanOptions::replay` off.

use mvdit_backend_vulkan::{open_with, ReplayStats, Vulkan, VulkanOptions};
use mvdit_train::config::preset;
use mvdit_train::run::load_data;
use mvdit_train::trainer::TrainState;

/// Losses of `steps` training steps of the tiny preset, and the device's replay counts.
fn train(be: &Vulkan, steps: usize) -> (Vec<f64>, ReplayStats) {
    let cfg = preset("tiny").unwrap();
    let (data, _) = load_data(&cfg).unwrap();
    let mut st = TrainState::new(be, cfg, data.class_names.clone()).unwrap();
    let losses = (0..steps).map(|_| mvdit_tests::step_loss(&mut st, &data)).collect();
    (losses, be.context().replay_stats())
}

#[test]
fn replayed_steps_match_built_ones() {
    let on = mvdit_tests::gpu!(Vulkan::new(None));
    let (with, stats) = train(&on, 5);
    eprintln!("replay on: {stats:?}");
    assert!(stats.replayed > 0, "no command buffer was replayed: {stats:?}");
    assert!(stats.buffers_reused > 0, "{stats:?}");
    let off = open_with(&VulkanOptions { replay: false, ..VulkanOptions::default() }).unwrap();
    let (without, stats_off) = train(&off, 5);
    eprintln!("replay off: {stats_off:?}");
    assert_eq!(stats_off.replayed, 0);
    assert_eq!(with, without, "losses with and without replay");
}
