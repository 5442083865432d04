//! Forward-only ops of the frozen networks (autoencoder, text encoder): shape checks and
//! launches. Images are channels last, [B, H, W, C].
//!
//! * `conv2d`: `im2col.wgsl` into a scratch matrix [pixels, Kh·Kw·Ci], then the matmul `linear`
//!   uses (y = col·wᵀ + b); 1×1 stride-1 unpadded convolutions go straight to it. The scratch is
//!   cut into chunks of output pixels when it would exceed [`COL_BUDGET`].
//! * `group_norm`: `group_norm.wgsl` in five dispatches (partial sums, mean, centred partial
//!   sums, 1/σ, apply).
//! * `silu`, `upsample_nearest`, `pixel_(un)shuffle`: `silu.wgsl` and `resample.wgsl` (gathers).
//! * `attention_masked`: through materialised scores, as attn_gemm.rs does: per (sample, KV
//!   head) one GEMM S = Q·Kᵀ over the rows of every query head sharing that KV head, the masked
//!   softmax in place (`attn_masked.wgsl`, where the rule for a query that sees no key lives),
//!   and O = P·V, K and V read in place. Queries are gathered head-major first
//!   (`attn_gather.wgsl`) unless each KV head serves one query head and all queries fit one
//!   block; blocks of queries keep the scores under [`SCORE_BUDGET`].
//! * `rope`: `rope_all.wgsl`, rotate-half on every token (no QK-norm).

use super::*;
use crate::gpu::Grid;
use mvdit_core::backend::{conv2d_check, image_check};
use crate::matmul::Batch;

/// Values of im2col scratch per GEMM (32 MiB of f32); larger convolutions run over chunks of
/// output pixels.
const COL_BUDGET: usize = 8 << 20;
/// Values of the attention scores of one block of queries (64 MiB of f32, under lavapipe's
/// 128 MiB storage-binding limit).
const SCORE_BUDGET: usize = 16 << 20;
/// Values of one (image, group) per workgroup of group_norm's partial sums.
const GN_CHUNK: usize = 4096;


/// Which resampling `resample.wgsl` does (its `mode`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resample {
    Upsample = 0,
    Unshuffle = 1,
    Shuffle = 2,
}

impl<D: GpuDevice> GpuBackend<D> {
    pub(crate) fn conv2d_gpu(&self, x: &GpuTensor<D>, w: &GpuTensor<D>, b: Option<&GpuTensor<D>>, conv: Conv2d) -> BResult<GpuTensor<D>> {
        self.conv2d_chunked(x, w, b, conv, COL_BUDGET)
    }

    /// `conv2d` with at most `budget` values of im2col scratch per product (at least one row).
    fn conv2d_chunked(&self, x: &GpuTensor<D>, w: &GpuTensor<D>, b: Option<&GpuTensor<D>>, conv: Conv2d, budget: usize) -> BResult<GpuTensor<D>> {
        let ([bn, h, wd, ci], [co, kh, kw], [ho, wo]) = conv2d_check(&x.shape, &w.shape, b.map(|b| b.shape.as_slice()), conv)?;
        let y = self.alloc(&[bn, ho, wo, co])?;
        let (pixels, k) = (bn * ho * wo, kh * kw * ci);
        if y.len == 0 {
            return Ok(y);
        }
        let wt = self.weight_t(w, co, k)?;
        let wop = Self::weight_operand(w, wt.as_ref(), co, k);
        if kh == 1 && kw == 1 && conv == Conv2d::same(0) {
            // A 1×1 convolution is a linear layer over pixels.
            self.matmul((pixels, co, k), (&x.buf, k, 1), wop, b, &y)?;
            return Ok(y);
        }
        // Whole tiles of the matmul per chunk where the budget allows.
        let mut chunk = (budget / k.max(1)).clamp(1, pixels);
        if chunk < pixels && chunk > 64 {
            chunk -= chunk % 64;
        }
        let col = self.alloc(&[chunk, k])?;
        // With several chunks each product goes to `part`, then to its rows of y.
        let part = (chunk < pixels).then(|| self.alloc(&[chunk, co])).transpose()?;
        let [top, _, left, _] = conv.pad;
        for start in (0..pixels).step_by(chunk) {
            let n = chunk.min(pixels - start);
            let params = [u(n * k), u(k), u(start), u(h), u(wd), u(ci), u(ho), u(wo), u(kw), u(conv.stride), u(top), u(left)];
            self.ctx.run("im2col", &params, &[&x.buf, &col.buf], Grid::Threads((n * k) as u64))?;
            match &part {
                None => self.matmul((n, co, k), (&col.buf, k, 1), wop, b, &y)?,
                Some(p) => {
                    self.matmul((n, co, k), (&col.buf, k, 1), wop, b, p)?;
                    self.ctx.copy(&p.buf, 0, &y.buf, start * co, n * co)?;
                }
            }
        }
        Ok(y)
    }

    pub(crate) fn group_norm_gpu(&self, x: &GpuTensor<D>, gamma: &GpuTensor<D>, beta: &GpuTensor<D>, groups: usize, eps: f64) -> BResult<GpuTensor<D>> {
        self.group_norm_chunked(x, (gamma, beta), groups, eps, GN_CHUNK)
    }

    /// `group_norm` with partial sums over `chunk` values of a group per workgroup.
    fn group_norm_chunked(&self, x: &GpuTensor<D>, (gamma, beta): (&GpuTensor<D>, &GpuTensor<D>), groups: usize, eps: f64, chunk: usize) -> BResult<GpuTensor<D>> {
        let c = x.last();
        check(x.shape.len() >= 2 && groups > 0 && c.is_multiple_of(groups), || format!("group_norm: x {:?} in {groups} groups", x.shape))?;
        check(gamma.shape == [c] && beta.shape == [c], || format!("group_norm: gamma {:?}, beta {:?} for {c} channels", gamma.shape, beta.shape))?;
        let y = self.alloc(&x.shape)?;
        if y.len == 0 {
            return Ok(y);
        }
        let bn = x.shape[0];
        let (n, cg) = (x.len / bn / c, c / groups);
        let (chunks, bgs) = ((n * cg).div_ceil(chunk).max(1), bn * groups);
        let max = self.ctx.max_groups() as usize;
        check(chunks <= max && bgs <= max, || format!("group_norm: {bn} images of {groups} groups exceed the dispatch grid"))?;
        let part = self.alloc(&[bgs, chunks])?;
        let stats = self.alloc(&[bgs, 2])?;
        let bufs = [&x.buf, &gamma.buf, &beta.buf, &part.buf, &stats.buf, &y.buf];
        let partials = Grid::Groups(u(chunks), u(bgs), 1);
        for (mode, grid) in [(0, partials), (1, Grid::Threads(bgs as u64)), (2, partials), (3, Grid::Threads(bgs as u64)), (4, Grid::Threads(y.len as u64))] {
            let params = [mode, u(y.len), u(n), u(c), u(cg), u(groups), u(chunk), u(chunks), u(bgs), f(eps as f32)];
            self.ctx.run("group_norm", &params, &bufs, grid)?;
        }
        Ok(y)
    }

    pub(crate) fn silu_gpu(&self, x: &GpuTensor<D>) -> BResult<GpuTensor<D>> {
        let y = self.alloc(&x.shape)?;
        self.ctx.run("silu", &[u(y.len)], &[&x.buf, &y.buf], Grid::Threads(y.len as u64))?;
        Ok(y)
    }

    pub(crate) fn resample(&self, x: &GpuTensor<D>, r: usize, mode: Resample) -> BResult<GpuTensor<D>> {
        let (op, [b, h, w, c]) = match mode {
            Resample::Upsample => ("upsample_nearest", image_check(&x.shape, "upsample_nearest")?),
            Resample::Unshuffle => ("pixel_unshuffle", image_check(&x.shape, "pixel_unshuffle")?),
            Resample::Shuffle => ("pixel_shuffle", image_check(&x.shape, "pixel_shuffle")?),
        };
        check(r > 0, || format!("{op}: factor 0"))?;
        let (shape, ch) = match mode {
            Resample::Upsample => ([b, h * r, w * r, c], c),
            Resample::Unshuffle => {
                check(h.is_multiple_of(r) && w.is_multiple_of(r), || format!("pixel_unshuffle: {h}x{w} not divisible by {r}"))?;
                ([b, h / r, w / r, c * r * r], c)
            }
            Resample::Shuffle => {
                check(c.is_multiple_of(r * r), || format!("pixel_shuffle: {c} channels not divisible by {r}²"))?;
                ([b, h * r, w * r, c / (r * r)], c / (r * r))
            }
        };
        let y = self.alloc(&shape)?;
        let params = [u(y.len), u(h), u(w), u(ch), u(r), mode as u32];
        self.ctx.run("resample", &params, &[&x.buf, &y.buf], Grid::Threads(y.len as u64))?;
        Ok(y)
    }

    pub(crate) fn attention_masked_gpu(&self, q: &GpuTensor<D>, k: &GpuTensor<D>, v: &GpuTensor<D>, heads: Heads, causal: bool, key_mask: Option<&GpuTensor<D>>) -> BResult<GpuTensor<D>> {
        self.attention_blocked((q, k, v), heads, causal, key_mask, SCORE_BUDGET)
    }

    /// `attention_masked` with scores of at most `budget` values per block of queries (at least
    /// one query per block).
    fn attention_blocked(&self, (q, k, v): (&GpuTensor<D>, &GpuTensor<D>, &GpuTensor<D>), heads: Heads, causal: bool, key_mask: Option<&GpuTensor<D>>, budget: usize) -> BResult<GpuTensor<D>> {
        let [b, l, dq] = match q.shape.as_slice() {
            [b, l, d] => [*b, *l, *d],
            s => return Err(BackendError::Shape(format!("attention_masked: q must be [B, L, D], got {s:?}"))),
        };
        let Heads { q: hq, kv: hkv } = heads;
        check(hq > 0 && hkv > 0 && hq.is_multiple_of(hkv) && dq.is_multiple_of(hq), || format!("attention_masked: {heads:?} for D={dq}"))?;
        let dh = dq / hq;
        check(k.shape == [b, l, hkv * dh] && v.shape == k.shape, || format!("attention_masked: q {:?}, k {:?}, v {:?}", q.shape, k.shape, v.shape))?;
        if let Some(m) = key_mask {
            check(m.shape == [b, l], || format!("attention_masked: key mask {:?} for [{b}, {l}]", m.shape))?;
        }
        let o = self.alloc(&q.shape)?;
        if o.len == 0 {
            return Ok(o);
        }
        let g = hq / hkv;
        // Queries per block: all of them while the scores [B·Hq, lq, L] fit the budget.
        let lq = (budget / (b * hq * l)).clamp(1, l);
        let s = self.alloc(&[b * hkv, g * lq, l])?;
        // Query heads that share a KV head are made consecutive (head-major) in `blk`, unless
        // there is nothing to group: one query head per KV head, all queries in one block.
        let in_place = g == 1 && lq == l;
        let blk = (!in_place).then(|| self.alloc(&[b, hq, lq, dh])).transpose()?;
        let kv_row = hkv * dh;
        let kv_batch = (l * kv_row, dh);
        let scale = 1.0 / (dh as f32).sqrt();
        let mask = self.opt(key_mask);
        for q0 in (0..l).step_by(lq) {
            let nq = lq.min(l - q0);
            let rz = g * nq;
            // Q (and O) of each (sample, KV head): (tensor, batch offsets, row stride).
            let (qo, qo_batch, qo_rs) = match &blk {
                None => (&o, (l * dq, dh), dq),
                Some(blk) => (blk, (hq * nq * dh, rz * dh), dh),
            };
            let gather = |mode: u32, src: &D::Buffer, dst: &D::Buffer| {
                let n = b * hq * nq * dh;
                self.ctx.run("attn_gather", &[u(n), u(l), u(nq), u(q0), u(hq), u(dh), mode], &[src, dst], Grid::Threads(n as u64))
            };
            let qa = match &blk {
                None => &q.buf,
                Some(blk) => {
                    gather(0, &q.buf, &blk.buf)?;
                    &blk.buf
                }
            };
            let s_batch = (hkv * rz * l, rz * l);
            let scores = Batch { count: b * hkv, nh: hkv, a: qo_batch, b: kv_batch, c: s_batch, c_rs: l };
            self.product((rz, l, dh), (qa, qo_rs, 1), (&k.buf, 1, kv_row), &s, &scores)?;
            let rows = b * hkv * rz;
            let params = [u(rows), u(l), u(rz), u(nq), u(q0), u(hkv), u32::from(causal), u32::from(key_mask.is_some()), f(scale)];
            self.ctx.run("attn_masked", &params, &[&s.buf, mask], Grid::Threads(rows as u64 * gpu::WG))?;
            let out = Batch { count: b * hkv, nh: hkv, a: s_batch, b: kv_batch, c: qo_batch, c_rs: qo_rs };
            self.product((rz, dh, l), (&s.buf, l, 1), (&v.buf, kv_row, 1), qo, &out)?;
            if let Some(blk) = &blk {
                gather(1, &blk.buf, &o.buf)?;
            }
        }
        Ok(o)
    }

    /// C_z = A_z·B_z over `batch` (see [`Self::matmul_batched`]); a batch of one with dense C
    /// takes the device's plain matmul (the register-blocked kernels on CPU devices).
    fn product(&self, (m, n, k): (usize, usize, usize), a: (&D::Buffer, usize, usize), b: (&D::Buffer, usize, usize), c: &GpuTensor<D>, batch: &Batch) -> BResult<()> {
        if batch.count == 1 && batch.c_rs == n {
            return self.matmul((m, n, k), a, b, None, c);
        }
        self.matmul_batched((m, n, k), a, b, &c.buf, batch)
    }

    pub(crate) fn rope_gpu(&self, x: &GpuTensor<D>, cos: &GpuTensor<D>, sin: &GpuTensor<D>, nh: usize) -> BResult<GpuTensor<D>> {
        let [b, l, d] = match x.shape.as_slice() {
            [b, l, d] => [*b, *l, *d],
            s => return Err(BackendError::Shape(format!("rope: x must be [B, L, D], got {s:?}"))),
        };
        check(nh > 0 && d.is_multiple_of(nh) && (d / nh).is_multiple_of(2), || format!("rope: D={d}, {nh} heads"))?;
        let dh = d / nh;
        check(cos.len == l * dh / 2 && sin.len == cos.len, || format!("rope: tables {:?} for L={l}, Dh={dh}", cos.shape))?;
        let y = self.alloc(&x.shape)?;
        let pairs = b * l * nh * (dh / 2);
        self.ctx.run("rope_all", &[u(pairs), u(l), u(nh), u(dh)], &[&x.buf, &cos.buf, &sin.buf, &y.buf], Grid::Threads(pairs as u64))?;
        Ok(y)
    }
}

/// The chunked paths (im2col over chunks of pixels, group sums over several workgroups,
/// attention over blocks of queries), which the op suite's small shapes never reach at the real
/// budgets, against the f64 references.
#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use super::*;
    use mvdit_core::ops::{self, AttnMask};
    use mvdit_tests::op_suite::{Rng, TOL};

    fn wide(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&x| f64::from(x)).collect()
    }

    fn close(be: &Wgpu, what: &str, got: &WgpuTensor, want: &[f64]) {
        let got = be.download(got).unwrap();
        let num: f64 = got.iter().zip(want).map(|(&g, &w)| (f64::from(g) - w).powi(2)).sum();
        let den: f64 = want.iter().map(|w| w * w).sum();
        let e = (num / den).sqrt();
        assert!(e <= TOL, "{what}: relative error {e:.3e}");
    }

    #[test]
    fn conv2d_over_chunks_of_pixels() {
        let be = mvdit_tests::gpu!(Wgpu::new(None));
        // [B, H, W, Ci, Co, K], geometry; budgets of a few rows of im2col (one of them under one
        // row: chunks of a single pixel).
        for ([b, h, w, ci, co, k], conv) in [([2, 9, 7, 5, 6, 3], Conv2d::same(1)), ([1, 8, 6, 3, 4, 3], Conv2d { stride: 2, pad: [0, 1, 0, 1] })] {
            let mut r = Rng::new(7);
            let (x, wt, bias) = (r.f32s(b * h * w * ci), r.f32s(co * k * k * ci), r.f32s(co));
            let (ho, wo) = conv.out_size(h, w, k, k).unwrap();
            let mut want = vec![0.0; b * ho * wo * co];
            ops::conv2d(&wide(&x), &wide(&wt), Some(&wide(&bias)), &mut want, [b, h, w, ci], [co, k, k], conv);
            let (xt, wt, bt) = (be.upload(&x, &[b, h, w, ci]).unwrap(), be.upload(&wt, &[co, k, k, ci]).unwrap(), be.upload(&bias, &[co]).unwrap());
            for budget in [1, 7 * k * k * ci, 64 * k * k * ci] {
                let y = be.conv2d_chunked(&xt, &wt, Some(&bt), conv, budget).unwrap();
                close(&be, &format!("conv2d {conv:?}, budget {budget}"), &y, &want);
            }
        }
    }

    #[test]
    fn group_norm_over_many_chunks_with_an_offset_mean() {
        let be = mvdit_tests::gpu!(Wgpu::new(None));
        let (b, n, c, g) = (2, 300, 8, 2);
        // A mean far from zero relative to the spread: the sums must not lose it.
        let x: Vec<f32> = Rng::new(8).f32s(b * n * c).iter().map(|v| 100.0 + v).collect();
        let (gamma, beta) = (Rng::new(9).f32s(c), Rng::new(10).f32s(c));
        let mut want = vec![0.0; x.len()];
        ops::group_norm(&wide(&x), &wide(&gamma), &wide(&beta), &mut want, n, g, 1e-6);
        let (xt, gt, bt) = (be.upload(&x, &[b, n, c]).unwrap(), be.upload(&gamma, &[c]).unwrap(), be.upload(&beta, &[c]).unwrap());
        for chunk in [1, 37, 64, 4096] {
            let y = be.group_norm_chunked(&xt, (&gt, &bt), g, 1e-6, chunk).unwrap();
            close(&be, &format!("group_norm, chunk {chunk}"), &y, &want);
        }
    }

    #[test]
    fn attention_over_blocks_of_queries() {
        let be = mvdit_tests::gpu!(Wgpu::new(None));
        // (B, L, Hq, Hkv, Dh, causal, masked)
        for (b, l, hq, hkv, dh, causal, masked) in [(3, 10, 4, 2, 8, true, true), (2, 9, 2, 2, 4, false, true), (1, 11, 1, 1, 6, true, false)] {
            let mut r = Rng::new(11);
            let (q, k, v) = (r.f32s(b * l * hq * dh), r.f32s(b * l * hkv * dh), r.f32s(b * l * hkv * dh));
            // Sample 0 sees no key, sample 1 its first 3, sample 2 its last 2.
            let mask: Vec<f32> = (0..b * l).map(|t| f32::from(u8::from(matches!((t / l, t % l), (1, j) if j < 3) || matches!((t / l, t % l), (2, j) if j + 2 >= l)))).collect();
            let heads = Heads { q: hq, kv: hkv };
            let keys = masked.then(|| wide(&mask));
            let mut want = vec![0.0; q.len()];
            ops::attention_masked(&wide(&q), &wide(&k), &wide(&v), &mut want, AttnMask { causal, keys: keys.as_deref() }, b, l, heads, dh);
            let up = |x: &[f32], s: &[usize]| be.upload(x, s).unwrap();
            let (qt, kt, vt, mt) = (up(&q, &[b, l, hq * dh]), up(&k, &[b, l, hkv * dh]), up(&v, &[b, l, hkv * dh]), up(&mask, &[b, l]));
            for per_block in [1, 3, l] {
                let o = be.attention_blocked((&qt, &kt, &vt), heads, causal, masked.then_some(&mt), b * hq * l * per_block).unwrap();
                close(&be, &format!("attention {:?}, {per_block} queries per block", (b, l, hq, hkv, dh, causal, masked)), &o, &want);
            }
        }
    }
}
