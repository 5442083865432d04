//! The PyTorch float64 reference cases reproduced by the CPU backend through the library:
//! velocity, loss and every parameter gradient within 1e-4 relative error per tensor.

use mvdit_backend_cpu::Cpu;
use mvdit_core::Backend;
use mvdit_model::{compute_shape, Dit, Keep};
use mvdit_tests::{load_case, rel_err, GOLDEN_CASES};

const TOL: f64 = 1e-4;

fn check_case(name: &str, keep: Keep) {
    let be = Cpu::new(2);
    let (ck, case) = load_case(name);
    let model = Dit::from_host(&be, ck.cfg.clone(), ck.params.clone()).unwrap();
    let x = &case.tensors["input.x"];
    let c = &case.tensors["input.context"];
    let tgt = &case.tensors["input.target"];
    let x = be.upload(&x.data, &x.shape).unwrap();
    let ctx = be.upload(&c.data, &c.shape).unwrap();
    let tgt = be.upload(&tgt.data, &tgt.shape).unwrap();
    let (v, tape) = model.forward(&be, &x, ctx, keep).unwrap();
    let e = rel_err(&be.download(&v).unwrap(), &case.tensors["output.velocity"].data);
    assert!(e < TOL, "{name}: velocity rel err {e:e}");
    let (loss, dv) = be.mse(&v, &tgt).unwrap();
    let e = rel_err(&be.download(&loss).unwrap(), &case.tensors["output.loss"].data);
    assert!(e < TOL, "{name}: loss rel err {e:e}");
    let grads = model.backward(&be, tape.unwrap(), &dv).unwrap();
    let mut worst = (0.0f64, String::new());
    for (spec, g) in model.layout.specs.iter().zip(&grads.params) {
        assert_eq!(be.shape(g), compute_shape(&spec.shape).as_slice(), "{name}: grad shape of {}", spec.name);
        let want = &case.tensors[&format!("grad.{}", spec.name)];
        let e = rel_err(&be.download(g).unwrap(), &want.data);
        assert!(e < TOL, "{name}: grad.{} rel err {e:e}", spec.name);
        if e > worst.0 {
            worst = (e, spec.name.clone());
        }
    }
    let grad_count = case.tensors.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(grad_count, model.layout.specs.len(), "{name}: every reference gradient is checked");
    eprintln!("{name} ({keep:?}): worst grad rel err {:.2e} at {}", worst.0, worst.1);
}

#[test]
fn golden_cases_match_with_all_activations_kept() {
    for name in GOLDEN_CASES {
        check_case(name, Keep::All);
    }
}

#[test]
fn golden_cases_match_with_block_recompute() {
    for name in GOLDEN_CASES {
        check_case(name, Keep::BlockInputs);
        // recompute for the first blocks, every activation kept for the last one(s)
        check_case(name, Keep::Tail(1));
        check_case(name, Keep::Tail(5));
    }
}
