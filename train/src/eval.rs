//! `mvdit eval`: velocity (and with `grad`, loss and every parameter gradient) of a checkpoint
//! on given inputs, written as safetensors.

use mvdit_core::dtype::Dtype;
use mvdit_core::{Backend, Layout, ModelConfig};
use mvdit_model::packed::round_each;
use mvdit_model::{load_checkpoint, Dit, HostTensor, Keep, Result, TensorFile};
use std::path::Path;

/// Depth from which eval keeps only block inputs (recompute) to bound memory.
const RECOMPUTE_FROM_DEPTH: usize = 64;

/// `mvdit eval`: the checkpoint (config from `cfg` or its metadata; weights rounded to 16-bit
/// `weights` first when asked), the inputs file, the output file written.
pub fn run<B: Backend>(be: &B, checkpoint: &Path, inputs: &Path, out: &Path, cfg: Option<&ModelConfig>, grad: bool, weights: Option<Dtype>) -> Result<()> {
    let mut ck = load_checkpoint(checkpoint, cfg)?;
    if let Some(dtype) = weights.filter(|&d| d != Dtype::F32) {
        round_each(&Layout::new(&ck.cfg).specs, &mut ck.params, dtype, &checkpoint.display().to_string())?;
    }
    let model = Dit::from_host(be, ck.cfg, ck.params).map_err(|e| e.context(checkpoint.display()))?;
    let input_file = TensorFile::read(inputs)?;
    eval(be, &model, &input_file, inputs, grad)?.write(out)
}

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
