//! The PyTorch float64 reference cases of `tests/golden/` reproduced through the library,
//! written once and stamped per backend: `backend_golden_tests!(ctor, tol: TOL)` expands to
//!
//! * one test per forward/backward case ([`GOLDEN_CASES`]): velocity, loss and every parameter
//!   gradient within `TOL` relative error per tensor, with every activation kept, with block
//!   recompute, and with recompute for all but the last block(s);
//! * `replays_t1_train10`: 10 steps through the trainer's own two halves of a step
//!   (`loss_and_grads`, `update`: AdamW with global-norm clipping and decay groups): every
//!   loss, the gradient norms and the final parameters within `TOL`.
//!
//! `TOL` is 1e-4 on the CPU backend (measured worst 7.8e-7) and 1e-3 on the GPU backends, whose
//! f32 kernels reduce in other orders (and whose exp and rsqrt are the device's).

use crate::{load_case, rel_err, GOLDEN_CASES};
use mvdit_core::Backend;
use mvdit_model::{compute_shape, Dit, Keep, TensorFile};
use mvdit_train::flow::noised_and_target;
use mvdit_train::optim::{OptimConfig, Optimizer};
use mvdit_train::step::{loss_and_grads, update, Group, StepOutcome, Watchers};

/// Stamps the suite for one backend: `mvdit_tests::backend_golden_tests!(MyBackend::new(), tol: 1e-3);`
/// (`ctor` is evaluated once per test).
#[macro_export]
macro_rules! backend_golden_tests {
    ($backend_ctor:expr, tol: $tol:expr) => {
        $crate::backend_golden_tests!(@each $backend_ctor, $tol;
            golden_g1_ctxproj: 0, golden_g2_bias_nonsquare: 1, golden_g3_patch1: 2, golden_g4_deep24: 3);

        #[test]
        fn replays_t1_train10() {
            let be = $backend_ctor;
            $crate::golden_suite::replay_t1_train10(&be, $tol);
        }
    };
    (@each $backend_ctor:expr, $tol:expr; $($name:ident: $case:expr),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let be = $backend_ctor;
                $crate::golden_suite::check_case(&be, $crate::GOLDEN_CASES[$case], $tol);
            }
        )*
    };
}

/// Which activations the forward pass keeps for the backward: all, block inputs only (every
/// block recomputed), and the last one or five blocks kept (recompute for the ones before).
const KEEPS: [Keep; 4] = [Keep::All, Keep::BlockInputs, Keep::Tail(1), Keep::Tail(5)];

/// Case `name` (one of [`GOLDEN_CASES`]) on `be` under every [`KEEPS`] setting.
pub fn check_case<B: Backend>(be: &B, name: &str, tol: f64) {
    assert!(GOLDEN_CASES.contains(&name), "{name} is not a golden case");
    let (ck, case) = load_case(name);
    let model = Dit::from_host(be, ck.cfg.clone(), ck.params.clone()).unwrap();
    let get = |k: &str| case.tensors.get(k).unwrap_or_else(|| panic!("{name}: no {k} in the case file"));
    let up = |k: &str| be.upload(&get(k).data, &get(k).shape).unwrap();
    let grad_count = case.tensors.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(grad_count, model.layout.specs.len(), "{name}: every reference gradient is checked");
    for keep in KEEPS {
        let (v, tape) = model.forward(be, &up("input.x"), up("input.context"), keep).unwrap();
        let e = rel_err(&be.download(&v).unwrap(), &get("output.velocity").data);
        assert!(e < tol, "{name} ({keep:?}): velocity rel err {e:e}");
        let (loss, dv) = be.mse(&v, &up("input.target")).unwrap();
        let e = rel_err(&be.download(&loss).unwrap(), &get("output.loss").data);
        assert!(e < tol, "{name} ({keep:?}): loss rel err {e:e}");
        let grads = model.backward(be, tape.unwrap(), &dv).unwrap();
        let mut worst = (0.0f64, "");
        for (spec, g) in model.layout.specs.iter().zip(&grads.params) {
            assert_eq!(be.shape(g), compute_shape(&spec.shape).as_slice(), "{name}: grad shape of {}", spec.name);
            let e = rel_err(&be.download(g).unwrap(), &get(&format!("grad.{}", spec.name)).data);
            assert!(e < tol, "{name} ({keep:?}): grad.{} rel err {e:e}", spec.name);
            if e > worst.0 {
                worst = (e, &spec.name);
            }
        }
        eprintln!("{name} ({keep:?}) on {}: worst grad rel err {:.2e} at {}", be.name(), worst.0, worst.1);
    }
}

/// `t1-train10` on `be`: the trajectory's 10 steps through [`loss_and_grads`] and [`update`]
/// from its initial parameters, with its draws of t and noise.
pub fn replay_t1_train10<B: Backend>(be: &B, tol: f64) {
    let dir = crate::golden_dir();
    let ck = mvdit_model::load_checkpoint(&dir.join("t1-train10.model.safetensors"), None).unwrap_or_else(|e| panic!("{e}"));
    let data = TensorFile::read(&dir.join("t1-train10.train.safetensors")).unwrap_or_else(|e| panic!("{e}"));
    let train: OptimConfig = serde_json::from_str(&data.metadata["train"]).unwrap();
    let mut model = Dit::from_host(be, ck.cfg.clone(), ck.params).unwrap();
    let shapes: Vec<Vec<usize>> = model.layout.specs.iter().map(|s| compute_shape(&s.shape)).collect();
    let mut opt = Optimizer::new(be, train, &shapes, Optimizer::<B>::decays_of(&model.layout)).unwrap();
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
        let (loss, grads, _) = loss_and_grads(be, &model, &xt, c, &target, Keep::All, 1.0, Watchers::default()).unwrap();
        let group = Group { be, params: &mut model.params, grads: &grads, opt: &mut opt, ema: None };
        let StepOutcome::Updated { loss, grad_norm, .. } = update(vec![group], loss, 0.0, 1.0).unwrap() else { panic!("step {k} skipped") };
        losses.push(loss as f32);
        norms.push(grad_norm as f32);
    }
    for (k, (&a, &b)) in losses.iter().zip(&data.tensors["output.losses"].data).enumerate() {
        assert!(((a - b) / b).abs() < tol as f32, "step {k}: loss {a} vs {b}");
    }
    let e = rel_err(&norms, &data.tensors["output.grad_norms"].data);
    assert!(e < tol, "grad norms rel err {e:e}: {norms:?}");
    let mut worst = 0.0f64;
    for (spec, p) in model.layout.specs.iter().zip(&model.to_host(be).unwrap()) {
        let e = rel_err(p, &data.tensors[&format!("final.{}", spec.name)].data);
        assert!(e < tol, "final.{} rel err {e:e}", spec.name);
        worst = worst.max(e);
    }
    eprintln!("t1-train10 on {}: worst final-parameter rel err {worst:.2e}", be.name());
}
