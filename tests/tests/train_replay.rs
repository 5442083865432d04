//! Replays `t1-train10`: 10 AdamW steps with clipping and decay groups, computed by PyTorch in
//! float64, through the trainer's own two halves of a step (`loss_and_grads`, `update`). Losses,
//! grad norms and final parameters must agree within 1e-4 relative on CPU.

use mvdit_backend_cpu::Cpu;
use mvdit_core::Backend;
use mvdit_model::{compute_shape, Dit, Keep, TensorFile};
use mvdit_tests::{golden_dir, rel_err};
use mvdit_train::flow::noised_and_target;
use mvdit_train::optim::{OptimConfig, Optimizer};
use mvdit_train::step::{loss_and_grads, update, Group, StepOutcome, Watchers};

#[test]
fn replays_t1_train10_losses_norms_and_final_parameters() {
    let be = Cpu::new(2);
    let ck = mvdit_model::load_checkpoint(&golden_dir().join("t1-train10.model.safetensors"), None).unwrap();
    let data = TensorFile::read(&golden_dir().join("t1-train10.train.safetensors")).unwrap();
    let train: OptimConfig = serde_json::from_str(&data.metadata["train"]).unwrap();
    let mut model = Dit::from_host(&be, ck.cfg.clone(), ck.params).unwrap();
    let shapes: Vec<Vec<usize>> = model.layout.specs.iter().map(|s| compute_shape(&s.shape)).collect();
    let mut opt = Optimizer::new(&be, train, &shapes, Optimizer::<Cpu>::decays_of(&model.layout)).unwrap();
    let x0 = &data.tensors["input.x0"];
    let ctx = &data.tensors["input.context"];
    let (mut losses, mut norms) = (vec![], vec![]);
    for k in 0..10 {
        let t = &data.tensors[&format!("step.{k}.t")].data;
        let eps = &data.tensors[&format!("step.{k}.eps")].data;
        let (xt, target) = noised_and_target(&x0.data, eps, t);
        let xt = be.upload(&xt, &x0.shape).unwrap();
        let target = be.upload(&target, &x0.shape).unwrap();
        let c = be.upload(&ctx.data, &ctx.shape).unwrap();
        let (loss, grads, _) = loss_and_grads(&be, &model, &xt, c, &target, Keep::All, Watchers::default()).unwrap();
        let group = Group { be: &be, params: &mut model.params, grads: &grads, opt: &mut opt, ema: None };
        let StepOutcome::Updated { loss, grad_norm, .. } = update(vec![group], loss, 0.0).unwrap() else { panic!("step {k} skipped") };
        losses.push(loss as f32);
        norms.push(grad_norm as f32);
    }
    let e = rel_err(&losses, &data.tensors["output.losses"].data);
    assert!(e < 1e-4, "losses rel err {e:e}: {losses:?}");
    for (k, (&a, &b)) in losses.iter().zip(&data.tensors["output.losses"].data).enumerate() {
        assert!(((a - b) / b).abs() < 1e-4, "step {k}: loss {a} vs {b}");
    }
    let e = rel_err(&norms, &data.tensors["output.grad_norms"].data);
    assert!(e < 1e-4, "grad norms rel err {e:e}");
    let finals = model.to_host(&be).unwrap();
    for (spec, p) in model.layout.specs.iter().zip(&finals) {
        let want = &data.tensors[&format!("final.{}", spec.name)];
        let e = rel_err(p, &want.data);
        assert!(e < 1e-4, "final.{} rel err {e:e}", spec.name);
    }
}
