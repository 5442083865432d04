//! Attention on the CPU: one (batch, head) pair per task, GEMMs for QKᵀ, PV and their gradients.

use crate::matmul::{matmul, View};
use rayon::prelude::*;

/// Strided view of head h of a [B, L, Nh, Dh] tensor, batch bi: [L, Dh] with row stride D.
fn head<'a>(x: &'a [f32], bi: usize, h: usize, l: usize, d: usize, dh: usize) -> &'a [f32] {
    let start = bi * l * d + h * dh;
    &x[start..start + (l - 1) * d + dh]
}

/// Copies per-head results laid out [B, Nh, L, Dh] into [B, L, Nh, Dh].
fn heads_to_tokens(src: &[f32], dst: &mut [f32], l: usize, nh: usize, dh: usize) {
    let d = nh * dh;
    dst.par_chunks_mut(l * d).enumerate().for_each(|(bi, out)| {
        for t in 0..l {
            for h in 0..nh {
                let s = ((bi * nh + h) * l + t) * dh;
                out[t * d + h * dh..t * d + (h + 1) * dh].copy_from_slice(&src[s..s + dh]);
            }
        }
    });
}

/// Softmax probabilities of one head: p [L, L] from q, k; also writes lse [L] when given.
fn probabilities(q: &[f32], k: &[f32], l: usize, d: usize, dh: usize, p: &mut [f32], lse: Option<&mut [f32]>, lse_in: Option<&[f32]>) {
    let scale = 1.0 / (dh as f32).sqrt();
    matmul(l, l, dh, p, l, View { data: q, rs: d, cs: 1 }, View { data: k, rs: 1, cs: d }, false, 1);
    let mut lse_out = lse;
    for i in 0..l {
        let row = &mut p[i * l..(i + 1) * l];
        let m = match lse_in {
            Some(lse) => lse[i],
            None => {
                let mx = row.iter().fold(f32::NEG_INFINITY, |a, &s| a.max(s * scale));
                let sum: f32 = row.iter().map(|&s| (s * scale - mx).exp()).sum();
                mx + sum.ln()
            }
        };
        for s in row.iter_mut() {
            *s = (*s * scale - m).exp();
        }
        if let Some(out) = lse_out.as_deref_mut() {
            out[i] = m;
        }
    }
}

/// q, k, v: [B, L, Nh, Dh] → (o [B, L, Nh, Dh], lse [B, Nh, L]).
pub fn forward(q: &[f32], k: &[f32], v: &[f32], b: usize, l: usize, nh: usize, dh: usize) -> (Vec<f32>, Vec<f32>) {
    let d = nh * dh;
    let mut o_heads = vec![0.0f32; b * nh * l * dh];
    let mut lse = vec![0.0f32; b * nh * l];
    o_heads.par_chunks_mut(l * dh).zip(lse.par_chunks_mut(l)).enumerate().for_each(|(bh, (o, lse))| {
        let (bi, h) = (bh / nh, bh % nh);
        let mut p = vec![0.0f32; l * l];
        probabilities(head(q, bi, h, l, d, dh), head(k, bi, h, l, d, dh), l, d, dh, &mut p, Some(lse), None);
        matmul(l, dh, l, o, dh, View::rows(&p, l), View { data: head(v, bi, h, l, d, dh), rs: d, cs: 1 }, false, 1);
    });
    let mut o = vec![0.0f32; b * l * d];
    heads_to_tokens(&o_heads, &mut o, l, nh, dh);
    (o, lse)
}

/// Gradients (dq, dk, dv), each [B, L, Nh, Dh]; P is rebuilt from lse.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &[f32],
    lse: &[f32],
    d_o: &[f32],
    b: usize,
    l: usize,
    nh: usize,
    dh: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = nh * dh;
    let scale = 1.0 / (dh as f32).sqrt();
    let per = l * dh;
    let mut grads = vec![0.0f32; 3 * b * nh * per];
    grads.par_chunks_mut(3 * per).enumerate().for_each(|(bh, g)| {
        let (bi, h) = (bh / nh, bh % nh);
        let (dq, rest) = g.split_at_mut(per);
        let (dk, dv) = rest.split_at_mut(per);
        let (qh, kh, vh) = (head(q, bi, h, l, d, dh), head(k, bi, h, l, d, dh), head(v, bi, h, l, d, dh));
        let (oh, doh) = (head(o, bi, h, l, d, dh), head(d_o, bi, h, l, d, dh));
        let mut p = vec![0.0f32; l * l];
        probabilities(qh, kh, l, d, dh, &mut p, None, Some(&lse[bh * l..(bh + 1) * l]));
        // dV = Pᵀ dO
        matmul(l, dh, l, dv, dh, View::transposed(&p, l), View { data: doh, rs: d, cs: 1 }, false, 1);
        // dP = dO Vᵀ, then dS = P ⊙ (dP − rowsum(dO ⊙ O)) · scale
        let mut ds = vec![0.0f32; l * l];
        matmul(l, l, dh, &mut ds, l, View { data: doh, rs: d, cs: 1 }, View { data: vh, rs: 1, cs: d }, false, 1);
        for i in 0..l {
            let di: f32 = (0..dh).map(|e| doh[i * d + e] * oh[i * d + e]).sum();
            for j in 0..l {
                ds[i * l + j] = p[i * l + j] * (ds[i * l + j] - di) * scale;
            }
        }
        matmul(l, dh, l, dq, dh, View::rows(&ds, l), View { data: kh, rs: d, cs: 1 }, false, 1);
        matmul(l, dh, l, dk, dh, View::transposed(&ds, l), View { data: qh, rs: d, cs: 1 }, false, 1);
    });
    let mut out = [vec![0.0f32; b * l * d], vec![0.0f32; b * l * d], vec![0.0f32; b * l * d]];
    for (which, dst) in out.iter_mut().enumerate() {
        let heads: Vec<f32> = grads.chunks(3 * per).flat_map(|g| g[which * per..(which + 1) * per].iter().copied()).collect();
        heads_to_tokens(&heads, dst, l, nh, dh);
    }
    let [dq, dk, dv] = out;
    (dq, dk, dv)
}
