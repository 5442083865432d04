//! Shape checks and small helpers the ops share.

use crate::CpuTensor;
use mvdit_core::{BResult, BackendError};

pub(crate) fn check(ok: bool, what: impl FnOnce() -> String) -> BResult<()> {
    if ok {
        Ok(())
    } else {
        Err(BackendError::Shape(what()))
    }
}

pub(crate) fn same_shape(a: &CpuTensor, b: &CpuTensor, op: &str) -> BResult<()> {
    check(a.shape == b.shape, || format!("{op}: {:?} vs {:?}", a.shape, b.shape))
}

/// Dh of a RoPE + QK-norm call after checking heads, Li and the [Li, Dh/2] tables.
pub(crate) fn rope_head_dim(d: usize, nh: usize, li: usize, l: usize, cos: &CpuTensor, sin: &CpuTensor) -> BResult<usize> {
    check(nh > 0 && d.is_multiple_of(nh) && (d / nh).is_multiple_of(2) && li <= l, || format!("rope_qknorm: D={d}, {nh} heads, Li={li}, L={l}"))?;
    let dh = d / nh;
    check(cos.data.len() == li * dh / 2 && sin.data.len() == cos.data.len(), || format!("rope tables {:?} for li={li}, dh={dh}", cos.shape))?;
    Ok(dh)
}

pub(crate) fn image_dims(image: [usize; 4], p: usize) -> BResult<mvdit_core::Dims> {
    let [b, c, h, w] = image;
    check(p > 0 && h % p == 0 && w % p == 0, || format!("image {h}x{w} not divisible by patch {p}"))?;
    let (gh, gw) = (h / p, w / p);
    Ok(mvdit_core::Dims { b, c, h, w, p, gh, gw, li: gh * gw, lt: 0, l: gh * gw, d: 0, nh: 0, dh: 0, m: 0, dc: 0 })
}

/// Sums `parts` partial vectors of length n laid out one after another.
pub(crate) fn reduce(partials: &[f32], n: usize) -> Vec<f32> {
    let mut out = partials[..n].to_vec();
    for p in partials.chunks_exact(n).skip(1) {
        for (o, &v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
    out
}
