//! `mvdit eval`: velocity (and with `grad`, loss and every parameter gradient) of a checkpoint
//! on given inputs, written as safetensors.

use mvdit_core::Backend;
use mvdit_model::{Dit, HostTensor, Keep, Result, TensorFile};
use std::path::Path;

/// Depth from which eval keeps only block inputs (recompute) to bound memory.
const RECOMPUTE_FROM_DEPTH: usize = 64;

/// Reads `inputs` (input.x, input.context[, input.target]) and returns the output file.
pub fn eval<B: Backend>(be: &B, model: &Dit<B>, inputs: &TensorFile, inputs_path: &Path, grad: bool) -> Result<TensorFile> {
    let at = |e: mvdit_model::Error| e.context(inputs_path.display());
    let c = Some(model.cfg.in_channels);
    let x = inputs.expect("input.x", &[None, c, None, None]).map_err(at)?;
    let ctx = inputs.expect("input.context", &[Some(x.shape[0]), None, Some(model.cfg.context_dim)]).map_err(at)?;
    let xt = be.upload(&x.data, &x.shape)?;
    let ct = be.upload(&ctx.data, &ctx.shape)?;
    let mut out = TensorFile::default();
    if !grad {
        let (v, _) = model.forward(be, &xt, ct, Keep::Nothing)?;
        out.insert("output.velocity", HostTensor::new(x.shape.clone(), be.download(&v)?));
        return Ok(out);
    }
    let target = inputs.expect("input.target", &x.shape.iter().map(|&s| Some(s)).collect::<Vec<_>>()).map_err(at)?;
    let tt = be.upload(&target.data, &target.shape)?;
    let keep = if model.cfg.depth >= RECOMPUTE_FROM_DEPTH { Keep::BlockInputs } else { Keep::All };
    let (v, tape) = model.forward(be, &xt, ct, keep)?;
    let (loss, dv) = be.mse(&v, &tt)?;
    out.insert("output.velocity", HostTensor::new(x.shape.clone(), be.download(&v)?));
    out.insert("output.loss", HostTensor::new(vec![1], be.download(&loss)?));
    let grads = model.backward(be, tape.expect("training forward keeps a tape"), &dv)?;
    for (spec, g) in model.layout.specs.iter().zip(&grads.params) {
        out.insert(format!("grad.{}", spec.name), HostTensor::new(spec.shape.clone(), be.download(g)?));
    }
    Ok(out)
}
