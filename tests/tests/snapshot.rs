//! Insta snapshot of a small deterministic forward and backward pass on the CPU backend, rounded
//! so that only real numerical changes (not last-bit noise) show up as a diff.

use mvdit_backend_cpu::Cpu;
use mvdit_core::{Backend, ModelConfig};
use mvdit_model::{Dit, Keep};
use mvdit_tests::{test_params, values};

fn round(v: &[f32]) -> Vec<String> {
    v.iter().map(|x| format!("{x:.4}")).collect()
}

#[test]
fn small_forward_and_backward_snapshot() {
    let cfg: ModelConfig = serde_json::from_str(
        r#"{"in_channels":1,"patch_size":2,"hidden_size":16,"depth":2,"num_heads":2,
            "mlp_hidden_dim":24,"qkv_bias":false,"context_dim":8}"#,
    )
    .unwrap();
    let be = Cpu::new(1);
    let model = Dit::from_host(&be, cfg.clone(), test_params(&cfg, 7)).unwrap();
    let x = be.upload(&values(2 * 16, 1, 1.0), &[2, 1, 4, 4]).unwrap();
    let ctx = be.upload(&values(2 * 2 * 8, 2, 1.0), &[2, 2, 8]).unwrap();
    let target = be.upload(&values(2 * 16, 3, 1.0), &[2, 1, 4, 4]).unwrap();
    let (v, tape) = model.forward(&be, &x, ctx, Keep::All).unwrap();
    let (loss, dv) = be.mse(&v, &target).unwrap();
    let grads = model.backward(&be, tape.unwrap(), &dv).unwrap();
    let gnorm = be.sum_squares(&grads.params.iter().collect::<Vec<_>>()).unwrap().sqrt();
    let report = format!(
        "velocity: {:?}\nloss: {:.5}\ngrad norm: {:.5}\nd final_proj.bias: {:?}",
        round(&be.download(&v).unwrap()),
        be.download(&loss).unwrap()[0],
        gnorm,
        round(&be.download(&grads.params[model.layout.final_b]).unwrap()),
    );
    insta::assert_snapshot!(report);
}
