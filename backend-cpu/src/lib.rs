//! CPU backend: GEMMs through the `gemm` crate, fused f32 kernels for everything else, all run
//! on the backend's own fork-join team (the calling thread plus helpers; see `team`). Tensors
//! come from a buffer pool (see `tensor`). Every op is checked against the f64 reference of
//! `mvdit_core::ops` by the op parity suite (`mvdit_tests::op_suite`).

mod attention;
mod checks;
mod frozen;
mod kernels;
mod linear;
mod options;
mod packed;
pub mod matmul;
mod profile;
mod residual;
mod simd;
mod team;
mod tensor;

pub use options::CpuOptions;
pub use packed::CpuPacked;
pub use tensor::CpuTensor;

use kernels::AdamConsts;
use matmul::{Job, View};
use mvdit_core::dtype::Dtype;
use mvdit_core::ops::{self, AdamW, Conv2d, Heads};
use mvdit_core::{BResult, Backend, BackendError, LinearGrads, MultiLinearGrads, MvSplitGrads, ResidualGrads};
use profile::{OpTimer, Profile};
use simd::{split, Out};
use std::ops::Range;
use team::Team;
use checks::{check, image_dims, reduce, rope_head_dim, same_shape};

/// Work (values touched) below which an element-wise op runs on the calling thread alone.
const GRAIN: usize = 8192;

/// The CPU backend (see [`CpuOptions`]).
pub struct Cpu {
    team: Team,
    profile: Option<Profile>,
}

impl Drop for Cpu {
    fn drop(&mut self) {
        if let Some(p) = &self.profile {
            p.report(self.team.stats());
        }
    }
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu::with_options(CpuOptions::default())
    }
}

impl Cpu {
    /// A backend with `threads` threads (0 = all cores), no profiling.
    pub fn new(threads: usize) -> Self {
        Cpu::with_options(CpuOptions { threads, ..CpuOptions::default() })
    }

    /// A backend as `opts` says.
    pub fn with_options(opts: CpuOptions) -> Self {
        let profile = opts.profile.then(Default::default);
        Cpu { team: Team::new(opts.thread_count()), profile }
    }

    pub fn threads(&self) -> usize {
        self.team.threads()
    }

    pub(crate) fn timer(&self, op: &'static str) -> Option<OpTimer<'_>> {
        self.profile.as_ref().map(|p| p.timer(op))
    }

    /// Runs `f` on blocks of `0..rows` on the team: one block per thread when the work
    /// (`rows * cost` values) is worth splitting, else one block on the calling thread.
    pub(crate) fn rows(&self, rows: usize, cost: usize, f: impl Fn(Range<usize>) + Sync) {
        let parts = if rows * cost < GRAIN { 1 } else { self.threads().min(rows) };
        if parts <= 1 {
            f(0..rows);
        } else {
            self.team.run(parts, |i| f(split(rows, parts, i)));
        }
    }

    /// How many blocks [`Cpu::rows`] would cut `rows` into (for ops with per-block partials).
    pub(crate) fn blocks(&self, rows: usize, cost: usize) -> usize {
        if rows * cost < GRAIN {
            1
        } else {
            self.threads().min(rows).max(1)
        }
    }
}

impl Backend for Cpu {
    type Tensor = CpuTensor;
    type Packed = CpuPacked;

    fn name(&self) -> String {
        format!("cpu ({} threads)", self.threads())
    }

    fn upload(&self, data: &[f32], shape: &[usize]) -> BResult<CpuTensor> {
        let _t = self.timer("upload");
        check(data.len() == shape.iter().product::<usize>(), || format!("upload: {} values for shape {shape:?}", data.len()))?;
        let mut t = CpuTensor::uninit(shape);
        t.data.copy_from_slice(data);
        Ok(t)
    }

    fn download(&self, t: &CpuTensor) -> BResult<Vec<f32>> {
        let _t = self.timer("download");
        Ok(t.data.clone())
    }

    fn shape<'a>(&self, t: &'a CpuTensor) -> &'a [usize] {
        &t.shape
    }

    fn upload_packed(&self, bits: &[u16], dtype: Dtype, shape: &[usize]) -> BResult<CpuPacked> {
        let _t = self.timer("upload");
        self.upload_packed_bits(bits, dtype, shape)
    }

    fn unpack(&self, p: &CpuPacked) -> BResult<CpuTensor> {
        let _t = self.timer("unpack");
        self.unpack_bits(p)
    }

    fn zeros(&self, shape: &[usize]) -> BResult<CpuTensor> {
        let _t = self.timer("zeros");
        Ok(CpuTensor::zeros(shape))
    }

    fn reshape(&self, mut t: CpuTensor, shape: &[usize]) -> BResult<CpuTensor> {
        check(t.data.len() == shape.iter().product::<usize>(), || format!("reshape: {:?} to {shape:?}", t.shape))?;
        t.shape = shape.to_vec();
        Ok(t)
    }

    fn patchify(&self, x: &CpuTensor, p: usize) -> BResult<CpuTensor> {
        let _t = self.timer("patchify");
        let [b, c, h, w] = <[usize; 4]>::try_from(x.shape.as_slice()).map_err(|_| BackendError::Shape(format!("patchify: {:?}", x.shape)))?;
        let d = image_dims([b, c, h, w], p)?;
        let mut rows = CpuTensor::uninit(&[b, d.li, c * p * p]);
        ops::patchify(&d, &x.data, &mut rows.data);
        Ok(rows)
    }

    fn patchify_backward(&self, d_rows: &CpuTensor, image: [usize; 4], p: usize) -> BResult<CpuTensor> {
        let d = image_dims(image, p)?;
        check(d_rows.data.len() == image.iter().product(), || format!("patchify_backward: {:?} for {image:?}", d_rows.shape))?;
        let mut dx = CpuTensor::uninit(&image);
        ops::patchify_backward(&d, &d_rows.data, &mut dx.data);
        Ok(dx)
    }

    fn unpatchify(&self, rows: &CpuTensor, image: [usize; 4], p: usize) -> BResult<CpuTensor> {
        let d = image_dims(image, p)?;
        check(rows.data.len() == image.iter().product(), || format!("unpatchify: {:?} for {image:?}", rows.shape))?;
        let mut x = CpuTensor::uninit(&image);
        ops::unpatchify(&d, &rows.data, &mut x.data);
        Ok(x)
    }

    fn unpatchify_backward(&self, dx: &CpuTensor, p: usize) -> BResult<CpuTensor> {
        let _t = self.timer("unpatchify_backward");
        let image = <[usize; 4]>::try_from(dx.shape.as_slice()).map_err(|_| BackendError::Shape(format!("unpatchify_backward: {:?}", dx.shape)))?;
        let d = image_dims(image, p)?;
        let mut rows = CpuTensor::uninit(&[d.b, d.li, p * p * d.c]);
        ops::unpatchify_backward(&d, &dx.data, &mut rows.data);
        Ok(rows)
    }

    fn concat_tokens(&self, a: &CpuTensor, b: &CpuTensor) -> BResult<CpuTensor> {
        let _t = self.timer("concat_tokens");
        let ((ba, la, da), (bb, lb, db)) = (a.bld()?, b.bld()?);
        check(ba == bb && da == db, || format!("concat_tokens: {:?} + {:?}", a.shape, b.shape))?;
        let mut out = CpuTensor::uninit(&[ba, la + lb, da]);
        let (na, nb) = (la * da, lb * db);
        for (bi, row) in out.data.chunks_exact_mut(na + nb).enumerate() {
            row[..na].copy_from_slice(&a.data[bi * na..(bi + 1) * na]);
            row[na..].copy_from_slice(&b.data[bi * nb..(bi + 1) * nb]);
        }
        Ok(out)
    }

    fn split_tokens(&self, x: &CpuTensor, la: usize) -> BResult<(CpuTensor, CpuTensor)> {
        let _t = self.timer("split_tokens");
        let (b, l, d) = x.bld()?;
        check(la <= l, || format!("split_tokens: {la} of {:?}", x.shape))?;
        let (mut a, mut rest) = (CpuTensor::uninit(&[b, la, d]), CpuTensor::uninit(&[b, l - la, d]));
        let (na, nr) = (la * d, (l - la) * d);
        for (bi, row) in x.data.chunks_exact(l * d).enumerate() {
            a.data[bi * na..(bi + 1) * na].copy_from_slice(&row[..na]);
            rest.data[bi * nr..(bi + 1) * nr].copy_from_slice(&row[na..]);
        }
        Ok((a, rest))
    }

    fn linear(&self, x: &CpuTensor, w: &CpuTensor, b: Option<&CpuTensor>) -> BResult<CpuTensor> {
        let _t = self.timer("linear");
        Ok(self.linears(x, &[w], &[b])?.pop().expect("one output"))
    }

    fn linear_multi(&self, x: &CpuTensor, ws: &[&CpuTensor], bs: &[Option<&CpuTensor>]) -> BResult<Vec<CpuTensor>> {
        let _t = self.timer("linear_multi");
        self.linears(x, ws, bs)
    }

    fn linear_backward(&self, x: &CpuTensor, w: &CpuTensor, dy: &CpuTensor, need_dx: bool, need_db: bool) -> BResult<LinearGrads<CpuTensor>> {
        let _t = self.timer("linear_backward");
        let (dx, mut dw, mut db) = self.linear_grads(x, &[w], &[dy], need_dx, &[need_db], None)?;
        Ok(LinearGrads { dx, dw: dw.pop().expect("one dw"), db: db.pop().expect("one db") })
    }

    fn linear_multi_backward(&self, x: &CpuTensor, ws: &[&CpuTensor], dys: &[&CpuTensor], need_db: &[bool], acc: Option<CpuTensor>) -> BResult<MultiLinearGrads<CpuTensor>> {
        let _t = self.timer("linear_multi_backward");
        let (dx, dw, db) = self.linear_grads(x, ws, dys, true, need_db, acc)?;
        Ok(MultiLinearGrads { dx: dx.expect("dx requested"), dw, db })
    }

    fn rmsnorm(&self, x: &CpuTensor, gain: Option<&CpuTensor>, eps: f64) -> BResult<(CpuTensor, CpuTensor)> {
        let _t = self.timer("rmsnorm");
        let d = x.last();
        check(!x.shape.is_empty() && d > 0, || format!("rmsnorm: {:?}", x.shape))?;
        if let Some(g) = gain {
            check(g.shape == [d], || format!("rmsnorm: gain {:?} for {:?}", g.shape, x.shape))?;
        }
        let n = x.rows();
        let mut y = CpuTensor::uninit(&x.shape);
        let mut rstd = CpuTensor::uninit(&[n]);
        let (yo, ro) = (Out::new(&mut y.data), Out::new(&mut rstd.data));
        let g = gain.map(|g| g.data.as_slice());
        self.rows(n, d, |r| {
            // SAFETY: rows r of y and rstd belong to this block.
            let (yb, rb) = unsafe { (yo.part(r.start * d, r.len() * d), ro.part(r.start, r.len())) };
            kernels::rmsnorm_rows(&x.data[r.start * d..r.end * d], g, eps as f32, yb, rb, d);
        });
        Ok((y, rstd))
    }

    fn rmsnorm_backward(&self, x: &CpuTensor, gain: Option<&CpuTensor>, rstd: &CpuTensor, dy: &CpuTensor) -> BResult<(CpuTensor, Option<CpuTensor>)> {
        let _t = self.timer("rmsnorm_backward");
        same_shape(x, dy, "rmsnorm_backward")?;
        let d = x.last();
        check(!x.shape.is_empty() && d > 0, || format!("rmsnorm_backward: {:?}", x.shape))?;
        let n = x.rows();
        check(rstd.data.len() == n, || format!("rmsnorm_backward: rstd {:?} for {:?}", rstd.shape, x.shape))?;
        if let Some(g) = gain {
            check(g.shape == [d], || format!("rmsnorm_backward: gain {:?} for {:?}", g.shape, x.shape))?;
        }
        let g = gain.map(|g| g.data.as_slice());
        let parts = self.blocks(n, d);
        let mut dx = CpuTensor::uninit(&x.shape);
        let mut partial = vec![0.0f32; if g.is_some() { parts * d } else { 0 }];
        let (xo, po) = (Out::new(&mut dx.data), Out::new(&mut partial));
        self.team.run(parts, |i| {
            let r = split(n, parts, i);
            // SAFETY: rows r of dx and partial row i belong to block i.
            let (dxb, dg) = unsafe { (xo.part(r.start * d, r.len() * d), if g.is_some() { po.part(i * d, d) } else { po.part(0, 0) }) };
            let rr = r.start * d..r.end * d;
            kernels::rmsnorm_backward_rows(&x.data[rr.clone()], g, &rstd.data[r], &dy.data[rr], dxb, dg, d);
        });
        let dg = g.map(|_| {
            let mut t = CpuTensor::uninit(&[d]);
            t.data.copy_from_slice(&reduce(&partial, d));
            t
        });
        Ok((dx, dg))
    }

    fn mvsplit(&self, x: &CpuTensor, u: &CpuTensor, alpha: &CpuTensor, beta: &CpuTensor, eps: f64, li: usize) -> BResult<(CpuTensor, CpuTensor)> {
        let _t = self.timer("mvsplit");
        same_shape(x, u, "mvsplit")?;
        let (b, l, d) = x.bld()?;
        check(alpha.shape == [d] && beta.shape == [d], || format!("mvsplit: alpha {:?}, beta {:?} for D={d}", alpha.shape, beta.shape))?;
        let mut z = CpuTensor::uninit(&x.shape);
        let mut rstd = CpuTensor::uninit(&[b * l]);
        let (zo, ro) = (Out::new(&mut z.data), Out::new(&mut rstd.data));
        self.rows(b, l * d, |r| {
            simd::with_scratch(4 * d, |scr| {
                for bi in r {
                    let s = bi * l * d..(bi + 1) * l * d;
                    // SAFETY: sample bi of z and rstd belongs to this block.
                    let (zs, rs) = unsafe { (zo.part(s.start, l * d), ro.part(bi * l, l)) };
                    kernels::mvsplit_sample(&x.data[s.clone()], &u.data[s], &alpha.data, &beta.data, eps as f32, zs, rs, l, d, li, scr);
                }
            })
        });
        Ok((z, rstd))
    }

    fn mvsplit_backward(
        &self,
        x: &CpuTensor,
        u: &CpuTensor,
        alpha: &CpuTensor,
        beta: &CpuTensor,
        rstd: &CpuTensor,
        dz: &CpuTensor,
        li: usize,
    ) -> BResult<MvSplitGrads<CpuTensor>> {
        let _t = self.timer("mvsplit_backward");
        same_shape(x, u, "mvsplit_backward")?;
        same_shape(x, dz, "mvsplit_backward")?;
        let (b, l, d) = x.bld()?;
        check(alpha.shape == [d] && beta.shape == [d] && rstd.data.len() == b * l, || {
            format!("mvsplit_backward: alpha {:?}, beta {:?}, rstd {:?} for {:?}", alpha.shape, beta.shape, rstd.shape, x.shape)
        })?;
        let parts = self.blocks(b, l * d);
        let mut dx = CpuTensor::uninit(&x.shape);
        let mut du = CpuTensor::uninit(&x.shape);
        let mut partial = vec![0.0f32; parts * 2 * d];
        let (xo, uo, po) = (Out::new(&mut dx.data), Out::new(&mut du.data), Out::new(&mut partial));
        self.team.run(parts, |i| {
            // SAFETY: block i's own samples and partial row.
            let (da, db) = unsafe { po.part(i * 2 * d, 2 * d) }.split_at_mut(d);
            simd::with_scratch(8 * d, |scr| {
                for bi in split(b, parts, i) {
                    let s = bi * l * d..(bi + 1) * l * d;
                    // SAFETY: sample bi belongs to this block.
                    let (dxs, dus) = unsafe { (xo.part(s.start, l * d), uo.part(s.start, l * d)) };
                    let r = &rstd.data[bi * l..(bi + 1) * l];
                    kernels::mvsplit_backward_sample(&x.data[s.clone()], &u.data[s.clone()], &alpha.data, &beta.data, r, &dz.data[s], dxs, dus, da, db, l, d, li, scr);
                }
            })
        });
        let sums = reduce(&partial, 2 * d);
        let (mut dalpha, mut dbeta) = (CpuTensor::uninit(&[d]), CpuTensor::uninit(&[d]));
        dalpha.data.copy_from_slice(&sums[..d]);
        dbeta.data.copy_from_slice(&sums[d..]);
        Ok(MvSplitGrads { dx, du, dalpha, dbeta })
    }

    fn residual_rmsnorm(&self, x: &CpuTensor, u: &CpuTensor, lambda: Option<&CpuTensor>, eps: f64) -> BResult<(CpuTensor, CpuTensor)> {
        self.residual_forward(x, u, lambda, eps)
    }

    fn residual_rmsnorm_backward(&self, x: &CpuTensor, u: &CpuTensor, lambda: Option<&CpuTensor>, rstd: &CpuTensor, dz: &CpuTensor) -> BResult<ResidualGrads<CpuTensor>> {
        self.residual_backward(x, u, lambda, rstd, dz)
    }

    fn rope_qknorm(&self, x: &CpuTensor, cos: &CpuTensor, sin: &CpuTensor, nh: usize, li: usize, eps: f64) -> BResult<(CpuTensor, CpuTensor)> {
        let _t = self.timer("rope_qknorm");
        let (b, l, d) = x.bld()?;
        let dh = rope_head_dim(d, nh, li, l, cos, sin)?;
        let mut y = CpuTensor::uninit(&x.shape);
        let mut rstd = CpuTensor::uninit(&[b * l * nh]);
        let (yo, ro) = (Out::new(&mut y.data), Out::new(&mut rstd.data));
        self.rows(b * l, d, |r| {
            // SAFETY: rows r belong to this block.
            let (yb, rb) = unsafe { (yo.part(r.start * d, r.len() * d), ro.part(r.start * nh, r.len() * nh)) };
            kernels::rope_qknorm_rows(&x.data[r.start * d..r.end * d], &cos.data, &sin.data, yb, rb, r.start, l, li, nh, dh, eps as f32);
        });
        Ok((y, rstd))
    }

    fn rope_qknorm_backward(&self, x: &CpuTensor, cos: &CpuTensor, sin: &CpuTensor, rstd: &CpuTensor, dy: &CpuTensor, nh: usize, li: usize) -> BResult<CpuTensor> {
        let _t = self.timer("rope_qknorm_backward");
        same_shape(x, dy, "rope_qknorm_backward")?;
        let (b, l, d) = x.bld()?;
        let dh = rope_head_dim(d, nh, li, l, cos, sin)?;
        check(rstd.data.len() == b * l * nh, || format!("rope_qknorm_backward: rstd {:?} for {:?}, {nh} heads", rstd.shape, x.shape))?;
        let mut dx = CpuTensor::uninit(&x.shape);
        let xo = Out::new(&mut dx.data);
        self.rows(b * l, d, |r| {
            let rr = r.start * d..r.end * d;
            // SAFETY: rows r belong to this block.
            let dxb = unsafe { xo.part(rr.start, rr.len()) };
            kernels::rope_qknorm_backward_rows(&x.data[rr.clone()], &cos.data, &sin.data, &rstd.data[r.start * nh..r.end * nh], &dy.data[rr], dxb, r.start, l, li, nh, dh);
        });
        Ok(dx)
    }

    fn attention(&self, q: &CpuTensor, k: &CpuTensor, v: &CpuTensor, nh: usize) -> BResult<(CpuTensor, CpuTensor)> {
        let _t = self.timer("attention");
        same_shape(q, k, "attention")?;
        same_shape(q, v, "attention")?;
        let (b, l, d) = q.bld()?;
        check(nh > 0 && d % nh == 0, || format!("attention: D={d} with {nh} heads"))?;
        let mut o = CpuTensor::uninit(&q.shape);
        let mut lse = CpuTensor::uninit(&[b, nh, l]);
        if l > 0 {
            attention::forward(&self.team, &q.data, &k.data, &v.data, &mut o.data, &mut lse.data, attention::Shape { b, l, nh, dh: d / nh });
        }
        Ok((o, lse))
    }

    fn attention_backward(
        &self,
        q: &CpuTensor,
        k: &CpuTensor,
        v: &CpuTensor,
        o: &CpuTensor,
        lse: &CpuTensor,
        d_o: &CpuTensor,
        nh: usize,
    ) -> BResult<(CpuTensor, CpuTensor, CpuTensor)> {
        let _t = self.timer("attention_backward");
        for (t, what) in [(k, "k"), (v, "v"), (o, "o"), (d_o, "d_o")] {
            same_shape(q, t, &format!("attention_backward {what}"))?;
        }
        let (b, l, d) = q.bld()?;
        check(nh > 0 && d % nh == 0 && lse.data.len() == b * nh * l, || format!("attention_backward: lse {:?} for {:?}, {nh} heads", lse.shape, q.shape))?;
        let (mut dq, mut dk, mut dv) = (CpuTensor::uninit(&q.shape), CpuTensor::uninit(&q.shape), CpuTensor::uninit(&q.shape));
        if l > 0 {
            let sh = attention::Shape { b, l, nh, dh: d / nh };
            attention::backward(&self.team, &q.data, &k.data, &v.data, &o.data, &lse.data, &d_o.data, &mut dq.data, &mut dk.data, &mut dv.data, sh);
        }
        Ok((dq, dk, dv))
    }

    fn swiglu(&self, gv: &CpuTensor) -> BResult<CpuTensor> {
        let _t = self.timer("swiglu");
        check(!gv.shape.is_empty() && gv.last().is_multiple_of(2), || format!("swiglu: odd feature size {:?}", gv.shape))?;
        let m = gv.last() / 2;
        let mut shape = gv.shape.clone();
        *shape.last_mut().expect("gv has a shape") = m;
        let mut y = CpuTensor::uninit(&shape);
        let n = gv.rows();
        let yo = Out::new(&mut y.data);
        self.rows(n, 8 * m, |r| {
            // SAFETY: rows r belong to this block.
            let yb = unsafe { yo.part(r.start * m, r.len() * m) };
            kernels::swiglu_rows(&gv.data[r.start * 2 * m..r.end * 2 * m], yb, m);
        });
        Ok(y)
    }

    fn swiglu_backward(&self, gv: &CpuTensor, dy: &CpuTensor) -> BResult<CpuTensor> {
        let _t = self.timer("swiglu_backward");
        let m = gv.last() / 2;
        let lead = |s: &[usize]| s[..s.len().saturating_sub(1)].to_vec();
        check(!gv.shape.is_empty() && gv.last().is_multiple_of(2) && lead(&dy.shape) == lead(&gv.shape) && dy.data.len() * 2 == gv.data.len(), || {
            format!("swiglu_backward: gv {:?}, dy {:?}", gv.shape, dy.shape)
        })?;
        let n = gv.rows();
        let mut dgv = CpuTensor::uninit(&gv.shape);
        let go = Out::new(&mut dgv.data);
        self.rows(n, 8 * m, |r| {
            // SAFETY: rows r belong to this block.
            let gb = unsafe { go.part(r.start * 2 * m, r.len() * 2 * m) };
            kernels::swiglu_backward_rows(&gv.data[r.start * 2 * m..r.end * 2 * m], &dy.data[r.start * m..r.end * m], gb, m);
        });
        Ok(dgv)
    }

    fn conv2d(&self, x: &CpuTensor, w: &CpuTensor, b: Option<&CpuTensor>, conv: Conv2d) -> BResult<CpuTensor> {
        let _t = self.timer("conv2d");
        self.conv2d_im2col(x, w, b, conv)
    }

    fn group_norm(&self, x: &CpuTensor, gamma: &CpuTensor, beta: &CpuTensor, groups: usize, eps: f64) -> BResult<CpuTensor> {
        let _t = self.timer("group_norm");
        self.group_norm_rows(x, gamma, beta, groups, eps)
    }

    fn silu(&self, x: &CpuTensor) -> BResult<CpuTensor> {
        let _t = self.timer("silu");
        self.silu_map(x)
    }

    fn upsample_nearest(&self, x: &CpuTensor, r: usize) -> BResult<CpuTensor> {
        let _t = self.timer("upsample_nearest");
        self.upsample(x, r)
    }

    fn pixel_unshuffle(&self, x: &CpuTensor, r: usize) -> BResult<CpuTensor> {
        let _t = self.timer("pixel_unshuffle");
        self.unshuffle(x, r)
    }

    fn pixel_shuffle(&self, x: &CpuTensor, r: usize) -> BResult<CpuTensor> {
        let _t = self.timer("pixel_shuffle");
        self.shuffle(x, r)
    }

    fn attention_masked(&self, q: &CpuTensor, k: &CpuTensor, v: &CpuTensor, heads: Heads, causal: bool, key_mask: Option<&CpuTensor>) -> BResult<CpuTensor> {
        let _t = self.timer("attention_masked");
        self.attention_masked_gemm(q, k, v, heads, causal, key_mask)
    }

    fn rope(&self, x: &CpuTensor, cos: &CpuTensor, sin: &CpuTensor, nh: usize) -> BResult<CpuTensor> {
        let _t = self.timer("rope");
        self.rope_all(x, cos, sin, nh)
    }

    fn mse(&self, pred: &CpuTensor, target: &CpuTensor) -> BResult<(CpuTensor, CpuTensor)> {
        let _t = self.timer("mse");
        same_shape(pred, target, "mse")?;
        let n = pred.data.len();
        let mut d = CpuTensor::uninit(&pred.shape);
        let c = (2.0 / n as f64) as f32;
        let parts = self.blocks(n, 1);
        let mut sums = vec![0.0f64; parts];
        let (dout, sout) = (Out::new(&mut d.data), std::sync::Mutex::new(&mut sums));
        self.team.run(parts, |i| {
            let r = split(n, parts, i);
            // SAFETY: block i's own range.
            let s = kernels::mse_block(&pred.data[r.clone()], &target.data[r.clone()], c, unsafe { dout.part(r.start, r.len()) });
            sout.lock().unwrap_or_else(|e| e.into_inner())[i] = s;
        });
        let loss = sums.iter().sum::<f64>() / n as f64;
        let mut l = CpuTensor::uninit(&[1]);
        l.data[0] = loss as f32;
        Ok((l, d))
    }

    fn axpby(&self, a: f32, x: &CpuTensor, b: f32, y: &CpuTensor) -> BResult<CpuTensor> {
        let _t = self.timer("axpby");
        same_shape(x, y, "axpby")?;
        let mut out = CpuTensor::uninit(&x.shape);
        let oo = Out::new(&mut out.data);
        self.rows(x.data.len(), 1, |r| {
            // SAFETY: block's own range.
            kernels::axpby(a, &x.data[r.clone()], b, &y.data[r.clone()], unsafe { oo.part(r.start, r.len()) });
        });
        Ok(out)
    }

    fn sum_squares(&self, ts: &[&CpuTensor]) -> BResult<f64> {
        let _t = self.timer("sum_squares");
        let total: usize = ts.iter().map(|t| t.data.len()).sum();
        if total < 4 * GRAIN {
            return Ok(ts.iter().map(|t| kernels::sum_squares(&t.data)).sum());
        }
        // Blocks of about total/threads values, cut across tensors.
        let parts = self.threads();
        let sums = std::sync::Mutex::new(vec![0.0f64; parts]);
        self.team.run(parts, |i| {
            let want = split(total, parts, i);
            let (mut s, mut at) = (0.0, 0usize);
            for t in ts {
                let r = want.start.max(at)..want.end.min(at + t.data.len());
                if r.start < r.end {
                    s += kernels::sum_squares(&t.data[r.start - at..r.end - at]);
                }
                at += t.data.len();
            }
            sums.lock().unwrap_or_else(|e| e.into_inner())[i] = s;
        });
        Ok(sums.into_inner().unwrap_or_else(|e| e.into_inner()).iter().sum())
    }

    fn adamw(&self, opt: &AdamW, step: u64, grad_scale: f64, p: &mut CpuTensor, g: &CpuTensor, m: &mut CpuTensor, v: &mut CpuTensor) -> BResult<()> {
        let _t = self.timer("adamw");
        same_shape(p, g, "adamw")?;
        same_shape(p, m, "adamw")?;
        same_shape(p, v, "adamw")?;
        let k = AdamConsts::new(opt, step, grad_scale);
        let (po, mo, vo) = (Out::new(&mut p.data), Out::new(&mut m.data), Out::new(&mut v.data));
        self.rows(g.data.len(), 4, |r| {
            // SAFETY: block's own range of p, m, v.
            let (pb, mb, vb) = unsafe { (po.part(r.start, r.len()), mo.part(r.start, r.len()), vo.part(r.start, r.len())) };
            kernels::adamw(k, pb, &g.data[r], mb, vb);
        });
        Ok(())
    }

    fn gather_rows(&self, table: &CpuTensor, idx: &[u32]) -> BResult<CpuTensor> {
        let _t = self.timer("gather_rows");
        let e = table.last();
        let vocab = table.rows();
        check(table.shape.len() == 2, || format!("gather_rows: table {:?}", table.shape))?;
        let mut out = CpuTensor::uninit(&[idx.len(), e]);
        for (r, &i) in idx.iter().enumerate() {
            check((i as usize) < vocab, || format!("gather_rows: index {i} of {vocab} rows"))?;
            out.data[r * e..(r + 1) * e].copy_from_slice(&table.data[i as usize * e..(i as usize + 1) * e]);
        }
        Ok(out)
    }

    fn scatter_add_rows(&self, dy: &CpuTensor, idx: &[u32], vocab: usize) -> BResult<CpuTensor> {
        let _t = self.timer("scatter_add_rows");
        let e = dy.last();
        check(dy.shape.len() == 2 && dy.rows() == idx.len(), || format!("scatter_add_rows: {:?} for {} indices", dy.shape, idx.len()))?;
        let mut out = CpuTensor::zeros(&[vocab, e]);
        for (r, &i) in idx.iter().enumerate() {
            check((i as usize) < vocab, || format!("scatter_add_rows: index {i} of {vocab} rows"))?;
            for (o, &g) in out.data[i as usize * e..(i as usize + 1) * e].iter_mut().zip(&dy.data[r * e..(r + 1) * e]) {
                *o += g;
            }
        }
        Ok(out)
    }
}

