//! Forward-only ops of the frozen networks (autoencoder, text encoder): convolution as
//! im2col + GEMM, group norm, SiLU, the resampling copies, masked grouped-query attention and
//! 1-D RoPE. Images are channels last, [B, H, W, C].

use super::*;
use mvdit_core::backend::{conv2d_check, image_check};
use mvdit_core::ops::{AttnMask, Conv2d, Heads};

/// Values of im2col scratch per GEMM batch (16 MiB of f32).
const COL_BUDGET: usize = 4 << 20;
/// Pixels per partial sum of group norm's statistics (f32 within, f64 across).
const STAT_ROWS: usize = 256;
/// Query rows per attention task.
const QUERY_BLOCK: usize = 64;


impl Cpu {
    pub(crate) fn conv2d_im2col(&self, x: &CpuTensor, w: &CpuTensor, b: Option<&CpuTensor>, conv: Conv2d) -> BResult<CpuTensor> {
        let ([bn, h, wd, ci], [co, kh, kw], [ho, wo]) = conv2d_check(&x.shape, &w.shape, b.map(|b| b.shape.as_slice()), conv)?;
        let mut y = CpuTensor::uninit(&[bn, ho, wo, co]);
        let k = kh * kw * ci;
        let bias = b.map(|b| b.data.as_slice());
        if kh == 1 && kw == 1 && conv == Conv2d::same(0) {
            // A 1×1 convolution is a linear layer over pixels.
            let job = Job { m: bn * h * wd, n: co, k, dst: &mut y.data, ldd: co, a: View::rows(&x.data, k), b: View::transposed(&w.data, k), bias };
            matmul::run(&self.team, vec![job]);
            return Ok(y);
        }
        let pixels = bn * ho * wo;
        let chunk = (COL_BUDGET / k).clamp(1, pixels);
        let mut col = tensor::take(chunk * k);
        let [top, _, left, _] = conv.pad;
        for start in (0..pixels).step_by(chunk) {
            let n = chunk.min(pixels - start);
            let out = Out::new(&mut col[..n * k]);
            self.rows(n, k, |r| {
                // SAFETY: rows r of the column buffer belong to this block.
                let cb = unsafe { out.part(r.start * k, r.len() * k) };
                for (p, row) in r.clone().zip(cb.chunks_exact_mut(k)) {
                    let px = start + p;
                    let (bi, oy, ox) = (px / (ho * wo), px / wo % ho, px % wo);
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let dst = &mut row[(ky * kw + kx) * ci..][..ci];
                            let (iy, ix) = ((oy * conv.stride + ky).checked_sub(top), (ox * conv.stride + kx).checked_sub(left));
                            match (iy, ix) {
                                (Some(iy), Some(ix)) if iy < h && ix < wd => dst.copy_from_slice(&x.data[((bi * h + iy) * wd + ix) * ci..][..ci]),
                                _ => dst.fill(0.0),
                            }
                        }
                    }
                }
            });
            let job = Job { m: n, n: co, k, dst: &mut y.data[start * co..(start + n) * co], ldd: co, a: View::rows(&col[..n * k], k), b: View::transposed(&w.data, k), bias };
            matmul::run(&self.team, vec![job]);
        }
        tensor::give(col);
        Ok(y)
    }

    /// Two passes over the pixels, each cut into row blocks with per-channel partial sums
    /// (f32 within a block of at most [`STAT_ROWS`] pixels, f64 across blocks): the group means,
    /// then the centred sums of squares; then one affine pass y = x·scale + shift per channel.
    pub(crate) fn group_norm_rows(&self, x: &CpuTensor, gamma: &CpuTensor, beta: &CpuTensor, groups: usize, eps: f64) -> BResult<CpuTensor> {
        let c = x.last();
        check(x.shape.len() >= 2 && groups > 0 && c.is_multiple_of(groups), || format!("group_norm: x {:?} in {groups} groups", x.shape))?;
        check(gamma.shape == [c] && beta.shape == [c], || format!("group_norm: gamma {:?}, beta {:?} for {c} channels", gamma.shape, beta.shape))?;
        let b = x.shape[0];
        let n = x.data.len() / b.max(1) / c;
        let cg = c / groups;
        let blocks = n.div_ceil(STAT_ROWS).max(1);
        // Per (image, block): channel sums of (x − centre) and its squares.
        let pass = |centre: &[f32]| -> Vec<f32> {
            let mut part = vec![0.0f32; b * blocks * 2 * c];
            let po = Out::new(&mut part);
            self.team.run(b * blocks, |t| {
                let (bi, blk) = (t / blocks, t % blocks);
                let rows = blk * STAT_ROWS..((blk + 1) * STAT_ROWS).min(n);
                // SAFETY: task t owns its 2c partials.
                let acc = unsafe { po.part(t * 2 * c, 2 * c) };
                let (sum, sq) = acc.split_at_mut(c);
                sum.fill(0.0);
                sq.fill(0.0);
                let img = &x.data[(bi * n + rows.start) * c..(bi * n + rows.end) * c];
                kernels::channel_sums(img, &centre[bi * c..(bi + 1) * c], sum, sq);
            });
            part
        };
        // Group statistic per image from the partials: Σ over blocks and the group's channels.
        let per_group = |part: &[f32], second: bool| -> Vec<f64> {
            let mut out = vec![0.0f64; b * groups];
            for (t, acc) in part.chunks_exact(2 * c).enumerate() {
                let vals = if second { &acc[c..] } else { &acc[..c] };
                for (ch, &v) in vals.iter().enumerate() {
                    out[t / blocks * groups + ch / cg] += v as f64;
                }
            }
            out
        };
        let count = (n * cg) as f64;
        let mean: Vec<f64> = per_group(&pass(&vec![0.0; b * c]), false).iter().map(|s| s / count).collect();
        let centre: Vec<f32> = (0..b * c).map(|i| mean[i / c * groups + i % c / cg] as f32).collect();
        let part = pass(&centre);
        // Σ(x − m̃)² − (Σ(x − m̃))²/N with m̃ the f32-rounded mean: exact centring.
        let (s1, s2) = (per_group(&part, false), per_group(&part, true));
        let (mut scale, mut shift) = (vec![0.0f32; b * c], vec![0.0f32; b * c]);
        for i in 0..b * c {
            let g = i / c * groups + i % c / cg;
            let var = ((s2[g] - s1[g] * s1[g] / count) / count).max(0.0);
            let rstd = 1.0 / (var + eps).sqrt();
            let m = mean[g];
            scale[i] = (rstd * gamma.data[i % c] as f64) as f32;
            shift[i] = (beta.data[i % c] as f64 - m * rstd * gamma.data[i % c] as f64) as f32;
        }
        let mut y = CpuTensor::uninit(&x.shape);
        let yo = Out::new(&mut y.data);
        self.rows(b * n, c, |r| {
            // SAFETY: pixel rows r belong to this block.
            let yb = unsafe { yo.part(r.start * c, r.len() * c) };
            let mut p = r.start;
            while p < r.end {
                let bi = p / n;
                let end = ((bi + 1) * n).min(r.end);
                let (xs, ys) = (&x.data[p * c..end * c], &mut yb[(p - r.start) * c..(end - r.start) * c]);
                kernels::affine_rows(xs, ys, &scale[bi * c..(bi + 1) * c], &shift[bi * c..(bi + 1) * c]);
                p = end;
            }
        });
        Ok(y)
    }

    pub(crate) fn silu_map(&self, x: &CpuTensor) -> BResult<CpuTensor> {
        let mut y = CpuTensor::uninit(&x.shape);
        let yo = Out::new(&mut y.data);
        self.rows(x.data.len(), 1, |r| {
            // SAFETY: elements r belong to this block.
            let yb = unsafe { yo.part(r.start, r.len()) };
            kernels::silu_slice(&x.data[r], yb);
        });
        Ok(y)
    }

    /// Output pixel rows of a resampling copy, in parallel: `f(dst_row, b, oy)` fills one row.
    fn image_rows(&self, shape: &[usize], f: impl Fn(&mut [f32], usize, usize) + Sync) -> CpuTensor {
        let (b, h, row) = (shape[0], shape[1], shape[2] * shape[3]);
        let mut y = CpuTensor::uninit(shape);
        let yo = Out::new(&mut y.data);
        self.rows(b * h, row, |r| {
            for br in r {
                // SAFETY: output row br belongs to this block.
                f(unsafe { yo.part(br * row, row) }, br / h, br % h);
            }
        });
        y
    }

    pub(crate) fn upsample(&self, x: &CpuTensor, r: usize) -> BResult<CpuTensor> {
        let [b, h, w, c] = image_check(&x.shape, "upsample_nearest")?;
        check(r > 0, || "upsample_nearest: factor 0".into())?;
        Ok(self.image_rows(&[b, h * r, w * r, c], |dst, bi, oy| {
            let src = &x.data[(bi * h + oy / r) * w * c..][..w * c];
            for (ox, px) in dst.chunks_exact_mut(c).enumerate() {
                px.copy_from_slice(&src[ox / r * c..][..c]);
            }
        }))
    }

    pub(crate) fn unshuffle(&self, x: &CpuTensor, r: usize) -> BResult<CpuTensor> {
        let [b, h, w, c] = image_check(&x.shape, "pixel_unshuffle")?;
        check(r > 0 && h % r == 0 && w % r == 0, || format!("pixel_unshuffle: {h}x{w} image not divisible by {r}"))?;
        let (ho, wo) = (h / r, w / r);
        Ok(self.image_rows(&[b, ho, wo, c * r * r], |dst, bi, oy| {
            for (ox, px) in dst.chunks_exact_mut(c * r * r).enumerate() {
                for (o, v) in px.iter_mut().enumerate() {
                    let (ch, i, j) = (o / (r * r), o / r % r, o % r);
                    *v = x.data[((bi * h + oy * r + i) * w + ox * r + j) * c + ch];
                }
            }
        }))
    }

    pub(crate) fn shuffle(&self, x: &CpuTensor, r: usize) -> BResult<CpuTensor> {
        let [b, h, w, cr] = image_check(&x.shape, "pixel_shuffle")?;
        check(r > 0 && cr.is_multiple_of(r * r), || format!("pixel_shuffle: {cr} channels not divisible by {r}²"))?;
        let c = cr / (r * r);
        Ok(self.image_rows(&[b, h * r, w * r, c], |dst, bi, oy| {
            let (iy, i) = (oy / r, oy % r);
            for (ox, px) in dst.chunks_exact_mut(c).enumerate() {
                let src = &x.data[((bi * h + iy) * w + ox / r) * cr..][..cr];
                for (ch, v) in px.iter_mut().enumerate() {
                    *v = src[(ch * r + i) * r + ox % r];
                }
            }
        }))
    }

    /// Tasks of up to [`QUERY_BLOCK`] queries of one (image, head): S = Q·Kᵀ·scale, masked
    /// softmax, O = P·V, both GEMMs on the task's thread.
    pub(crate) fn attention_masked_gemm(&self, q: &CpuTensor, k: &CpuTensor, v: &CpuTensor, heads: Heads, causal: bool, key_mask: Option<&CpuTensor>) -> BResult<CpuTensor> {
        let (b, l, dq) = q.bld()?;
        check(heads.kv > 0 && heads.q.is_multiple_of(heads.kv) && dq.is_multiple_of(heads.q), || format!("attention_masked: {heads:?} for D={dq}"))?;
        let dh = dq / heads.q;
        let dkv = heads.kv * dh;
        check(k.shape == [b, l, dkv] && v.shape == k.shape, || format!("attention_masked: q {:?}, k {:?}, v {:?} with {heads:?}", q.shape, k.shape, v.shape))?;
        if let Some(m) = key_mask {
            check(m.shape == [b, l], || format!("attention_masked: key mask {:?} for [B, L] = [{b}, {l}]", m.shape))?;
        }
        let mask = AttnMask { causal, keys: key_mask.map(|m| m.data.as_slice()) };
        let scale = 1.0 / (dh as f32).sqrt();
        let group = heads.q / heads.kv;
        let blocks = l.div_ceil(QUERY_BLOCK);
        let mut o = CpuTensor::uninit(&q.shape);
        let oo = Out::new(&mut o.data);
        self.team.run(b * heads.q * blocks, |t| {
            let (bi, h, qb) = (t / (heads.q * blocks), t / blocks % heads.q, t % blocks);
            let rows = qb * QUERY_BLOCK..((qb + 1) * QUERY_BLOCK).min(l);
            let n = rows.len();
            let hk = h / group;
            let mut s = tensor::take(n * l);
            let qv = View { data: &q.data[(bi * l + rows.start) * dq + h * dh..], rs: dq, cs: 1 };
            let kt = View { data: &k.data[bi * l * dkv + hk * dh..], rs: 1, cs: dkv };
            matmul::matmul(n, l, dh, &mut s, l, qv, kt, false);
            for (i, srow) in rows.clone().zip(s.chunks_exact_mut(l)) {
                let visible = |j: usize| (!mask.causal || j <= i) && mask.keys.is_none_or(|m| m[bi * l + j] != 0.0);
                let mut mx = f32::NEG_INFINITY;
                for (j, sv) in srow.iter_mut().enumerate() {
                    *sv = if visible(j) { *sv * scale } else { f32::NEG_INFINITY };
                    mx = mx.max(*sv);
                }
                if mx == f32::NEG_INFINITY {
                    srow.fill(0.0); // no visible key: o = 0 (see ops::attention_masked)
                    continue;
                }
                let mut sum = 0.0f32;
                for sv in srow.iter_mut() {
                    *sv = (*sv - mx).exp();
                    sum += *sv;
                }
                let inv = 1.0 / sum;
                srow.iter_mut().for_each(|sv| *sv *= inv);
            }
            let vv = View { data: &v.data[bi * l * dkv + hk * dh..], rs: dkv, cs: 1 };
            // SAFETY: this task alone writes rows `rows` × columns [h·Dh, (h+1)·Dh) of image bi.
            unsafe {
                let dst = oo.part((bi * l + rows.start) * dq + h * dh, (n - 1) * dq + dh);
                matmul::matmul_ptr(n, dh, l, dst.as_mut_ptr(), dq, View::rows(&s, l), vv, false);
            }
            tensor::give(s);
        });
        Ok(o)
    }

    pub(crate) fn rope_all(&self, x: &CpuTensor, cos: &CpuTensor, sin: &CpuTensor, nh: usize) -> BResult<CpuTensor> {
        let (b, l, d) = x.bld()?;
        let dh = rope_head_dim(d, nh, l, l, cos, sin)?;
        let mut y = CpuTensor::new(tensor::take(x.data.len()), &x.shape);
        y.data.copy_from_slice(&x.data);
        let yo = Out::new(&mut y.data);
        self.rows(b * l, d, |r| {
            // SAFETY: token rows r belong to this block.
            let yb = unsafe { yo.part(r.start * d, r.len() * d) };
            for (t, row) in r.zip(yb.chunks_exact_mut(d)) {
                let pos = t % l;
                ops::rope_apply(row, &cos.data[pos * dh / 2..], &sin.data[pos * dh / 2..], 1, 1, 1, nh, dh, false);
            }
        });
        Ok(y)
    }
}
