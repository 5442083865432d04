//! Depth (pipeline) split on CPU, with separate `Cpu` instances standing in for devices:
//! stages chained by hand give the unsplit model's velocity and gradients exactly; the threaded
//! GPipe schedule with micro-batches gives its loss, gradients and AdamW updates within 1e-5;
//! a training tape holds exactly what `mvdit plan` counts.

use mvdit_backend_cpu::Cpu;
use mvdit_core::{Backend, Dims, Layout, ModelConfig};
use mvdit_model::{tape_elems, Dit, GradHook, Keep, Result, StageIn, StageOut};
use mvdit_tests::{rel_err, test_params, values};
use mvdit_train::depth_split::DepthSplit;
use mvdit_train::optim::{OptimConfig, Optimizer};
use mvdit_train::step::{loss_and_grads, update, Group, StepOutcome, Watchers};

fn cfg(context_dim: usize, bias: bool) -> ModelConfig {
    serde_json::from_value(serde_json::json!({
        "in_channels": 2, "patch_size": 2, "hidden_size": 16, "depth": 5, "num_heads": 2,
        "mlp_hidden_dim": 24, "qkv_bias": bias, "context_dim": context_dim
    }))
    .unwrap()
}

const B: usize = 5;
const LT: usize = 3;

fn inputs(c: &ModelConfig) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    (values(B * 2 * 4 * 4, 1, 1.0), values(B * LT * c.context_dim, 2, 1.0), values(B * 2 * 4 * 4, 3, 1.0))
}

/// Records the order in which gradient groups are handed over.
struct Order(Vec<usize>);
impl GradHook<<Cpu as Backend>::Tensor> for Order {
    fn ready(&mut self, grads: &[(usize, &<Cpu as Backend>::Tensor)]) -> Result<()> {
        self.0.extend(grads.iter().map(|g| g.0));
        Ok(())
    }
}

#[test]
fn chained_stages_equal_the_whole_model_exactly() {
    for (c, keep) in [(cfg(16, false), Keep::All), (cfg(8, true), Keep::BlockInputs)] {
        let params = test_params(&c, 5);
        let layout = Layout::new(&c);
        let (x, ctx, target) = inputs(&c);
        let be = Cpu::new(1);
        let whole = Dit::from_host(&be, c.clone(), params.clone()).unwrap();
        let xt = be.upload(&x, &[B, 2, 4, 4]).unwrap();
        let (v, tape) = whole.forward(&be, &xt, be.upload(&ctx, &[B, LT, c.context_dim]).unwrap(), keep).unwrap();
        let tape = tape.unwrap();
        let dims = Dims::new(&c, B, 4, 4, LT).unwrap();
        assert_eq!(tape.elems(&be), tape_elems(&c, &dims, 0..c.depth, keep), "plan's activation count vs the real tape");
        let (_, dv) = be.mse(&v, &be.upload(&target, &[B, 2, 4, 4]).unwrap()).unwrap();
        let mut order = Order(vec![]);
        let g = whole.backward_hooked(&be, tape, &dv, None, Some(&mut order)).unwrap();
        // Head first, blocks from the last, stem last; every parameter exactly once.
        assert_eq!(order.0[0], layout.final_w);
        let stem_from = order.0.len() - layout.blocks[0].wq;
        assert!(order.0[stem_from..].iter().all(|&i| i < layout.blocks[0].wq), "{:?}", order.0);
        assert_eq!(order.0[2], layout.blocks[c.depth - 1].wq, "then the last block");
        let mut seen = order.0.clone();
        seen.sort();
        assert_eq!(seen, (0..layout.specs.len()).collect::<Vec<_>>());

        // Three stages on three backend instances: blocks 0..2, 2..3, 3..5.
        let ranges = [0..2, 2..3, 3..5];
        let bes = [Cpu::new(1), Cpu::new(1), Cpu::new(1)];
        let stages: Vec<Dit<Cpu>> = ranges
            .iter()
            .zip(&bes)
            .map(|(r, be)| {
                let idx = layout.stage_params(r.clone());
                Dit::stage_from_host(be, c.clone(), r.clone(), params[idx].to_vec()).unwrap()
            })
            .collect();
        assert!(stages[1].forward(&bes[1], &xt, bes[1].upload(&ctx, &[B, LT, c.context_dim]).unwrap(), keep).is_err());
        let mut tapes = vec![];
        let mut host: Option<(Vec<f32>, Dims)> = None;
        let mut vel = None;
        for (s, (m, be)) in stages.iter().zip(&bes).enumerate() {
            let input = match host.take() {
                None => StageIn::Inputs { x: &be.upload(&x, &[B, 2, 4, 4]).unwrap(), context: be.upload(&ctx, &[B, LT, c.context_dim]).unwrap() },
                Some((t, d)) => StageIn::Tokens { t: be.upload(&t, &[B, dims.l, 16]).unwrap(), dims: d },
            };
            let (out, tape) = m.stage_forward(be, input, keep, None).unwrap();
            let tape = tape.unwrap();
            assert_eq!(tape.elems(be), tape_elems(&c, &dims, ranges[s].clone(), keep), "stage {s} tape");
            match out {
                StageOut::Tokens(t) => host = Some((be.download(&t).unwrap(), tape.dims())),
                StageOut::Velocity(v) => vel = Some(be.download(&v).unwrap()),
            }
            tapes.push(tape);
        }
        assert_eq!(vel.unwrap(), be.download(&v).unwrap());
        let mut d = be.download(&dv).unwrap();
        let mut grads = vec![];
        for ((m, be), tape) in stages.iter().zip(&bes).zip(tapes).rev() {
            let d_out = if m.blocks().end == c.depth { be.upload(&d, &[B, 2, 4, 4]).unwrap() } else { be.upload(&d, &[B, dims.l, 16]).unwrap() };
            let g = m.stage_backward(be, tape, &d_out, None, None).unwrap();
            d = be.download(&g.d_input).unwrap();
            let mut host: Vec<Vec<f32>> = g.params.iter().map(|t| be.download(t).unwrap()).collect();
            host.extend(std::mem::take(&mut grads));
            grads = host;
        }
        assert_eq!(d, be.download(&g.context).unwrap(), "d context");
        for (i, (a, b)) in grads.iter().zip(&g.params).enumerate() {
            assert_eq!(a, &be.download(b).unwrap(), "gradient of {}", layout.specs[i].name);
        }
    }
}

#[test]
fn gpipe_with_micro_batches_trains_like_the_unsplit_model() {
    let c = cfg(8, false);
    let params = test_params(&c, 9);
    let (x, ctx, target) = inputs(&c);
    let optim = OptimConfig { lr: 1e-2, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.1, max_grad_norm: 0.5, warmup_steps: 0 };
    let layout = Layout::new(&c);
    for keep in [Keep::All, Keep::BlockInputs] {
        let be = Cpu::new(2);
        let mut whole = Dit::from_host(&be, c.clone(), params.clone()).unwrap();
        let shapes: Vec<Vec<usize>> = layout.specs.iter().map(|s| mvdit_model::compute_shape(&s.shape)).collect();
        let mut opt = Optimizer::new(&be, optim.clone(), &shapes, Optimizer::<Cpu>::decays_of(&layout)).unwrap();
        let (a, b2) = (Cpu::new(1), Cpu::new(1));
        let mut split = DepthSplit::new(&[&a, &b2], c.clone(), params.clone(), &[0..3, 3..5], optim.clone()).unwrap();

        // Gradients of one batch in 3 micro-batches (sizes 1, 2, 2) vs the whole batch at once.
        let (loss, grads, d_ctx) = split.loss_and_grads(&x, [B, 2, 4, 4], &ctx, LT, &target, 3, keep, 1.0).unwrap();
        let xt = be.upload(&x, &[B, 2, 4, 4]).unwrap();
        let tg = be.upload(&target, &[B, 2, 4, 4]).unwrap();
        let (want_loss, want, want_ctx) =
            loss_and_grads(&be, &whole, &xt, be.upload(&ctx, &[B, LT, 8]).unwrap(), &tg, keep, 1.0, Default::default()).unwrap();
        assert!(((loss - want_loss) / want_loss).abs() < 1e-6, "loss {loss} vs {want_loss}");
        let got: Vec<Vec<f32>> = grads.iter().zip([&a, &b2]).flat_map(|(g, be)| g.iter().map(|t| be.download(t).unwrap()).collect::<Vec<_>>()).collect();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let e = rel_err(g, &be.download(w).unwrap());
            assert!(e < 1e-5, "gradient of {}: relative error {e:e}", layout.specs[i].name);
        }
        assert!(rel_err(&d_ctx, &be.download(&want_ctx).unwrap()) < 1e-5);

        // Three AdamW steps with clipping through the one update: same losses, norms and weights.
        for step in 0..3 {
            let (loss, grads, _) = split.loss_and_grads(&x, [B, 2, 4, 4], &ctx, LT, &target, 2, keep, 1.0).unwrap();
            let groups = split.stages.iter_mut().zip(&grads).map(|(s, g)| Group { be: s.be, params: &mut s.model.params, grads: g, opt: &mut s.opt, ema: None }).collect();
            let s = update(groups, loss, 0.0, 1.0).unwrap();
            let (loss, grads, _) = loss_and_grads(&be, &whole, &xt, be.upload(&ctx, &[B, LT, 8]).unwrap(), &tg, keep, 1.0, Watchers::default()).unwrap();
            let w = update(vec![Group { be: &be, params: &mut whole.params, grads: &grads, opt: &mut opt, ema: None }], loss, 0.0, 1.0).unwrap();
            let (StepOutcome::Updated { loss: sl, grad_norm: sn, .. }, StepOutcome::Updated { loss: wl, grad_norm: wn, .. }) = (s, w) else { panic!("step {step} skipped") };
            assert!(((sl - wl) / wl).abs() < 1e-5, "step {step}: loss {sl} vs {wl}");
            assert!(((sn - wn) / wn).abs() < 1e-5, "step {step}: norm {sn} vs {wn}");
        }
        let got = split.to_host().unwrap();
        let want = whole.to_host(&be).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let e = rel_err(g, w);
            assert!(e < 1e-5, "{:?}: {} after 3 steps, relative error {e:e}", keep, layout.specs[i].name);
        }
    }
}

#[test]
fn bad_splits_are_refused_with_a_reason() {
    let c = cfg(16, false);
    let be = Cpu::new(1);
    let p = || test_params(&c, 1);
    let o = OptimConfig { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0, max_grad_norm: 1.0, warmup_steps: 0 };
    let err = |r: &[std::ops::Range<usize>], n: usize| DepthSplit::new(&vec![&be; n], c.clone(), p(), r, o.clone()).err().unwrap().0;
    assert!(err(&[0..2, 3..5], 2).contains("do not cover"));
    assert!(err(&[0..2, 2..4], 2).contains("do not cover"));
    assert!(err(&[0..5], 2).contains("2 devices for 1 stages"));
    let split = DepthSplit::new(&[&be, &be], c.clone(), p(), &[0..1, 1..5], o.clone()).unwrap();
    let (x, ctx, t) = inputs(&c);
    assert!(split.loss_and_grads(&x, [B, 2, 4, 4], &ctx, LT, &t, 6, Keep::All, 1.0).err().unwrap().0.contains("micro-batches"));
    assert!(Dit::stage_from_host(&be, c.clone(), 3..3, vec![]).err().unwrap().0.contains("non-empty"));
}
