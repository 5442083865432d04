//! CPU backend: GEMMs through the `gemm` crate, attention per (batch, head) on a rayon pool,
//! element-wise ops from the core references (in f32).

mod attention;
pub mod matmul;
mod residual;
mod tensor;

pub use tensor::CpuTensor;

use matmul::{matmul, View};
use mvdit_core::ops::{self, AdamW};
use mvdit_core::{BResult, Backend, BackendError, LinearGrads, MvSplitGrads, ResidualGrads};
use rayon::prelude::*;

/// The CPU backend. `threads` is the size of the rayon pool it runs on (0 = all cores).
pub struct Cpu {
    pool: rayon::ThreadPool,
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu::new(0)
    }
}

impl Cpu {
    pub fn new(threads: usize) -> Self {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool");
        Cpu { pool }
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `f` on this backend's thread pool.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> BResult<()> {
    if ok {
        Ok(())
    } else {
        Err(BackendError::Shape(what()))
    }
}

fn same_shape(a: &CpuTensor, b: &CpuTensor, op: &str) -> BResult<()> {
    check(a.shape == b.shape, || format!("{op}: {:?} vs {:?}", a.shape, b.shape))
}

fn image_dims(image: [usize; 4], p: usize) -> BResult<mvdit_core::Dims> {
    let [b, c, h, w] = image;
    check(p > 0 && h % p == 0 && w % p == 0, || format!("image {h}x{w} not divisible by patch {p}"))?;
    let (gh, gw) = (h / p, w / p);
    Ok(mvdit_core::Dims { b, c, h, w, p, gh, gw, li: gh * gw, lt: 0, l: gh * gw, d: 0, nh: 0, dh: 0, m: 0, dc: 0 })
}

impl Backend for Cpu {
    type Tensor = CpuTensor;

    fn name(&self) -> String {
        format!("cpu ({} threads)", self.threads())
    }

    fn upload(&self, data: &[f32], shape: &[usize]) -> BResult<CpuTensor> {
        check(data.len() == shape.iter().product::<usize>(), || format!("upload: {} values for shape {shape:?}", data.len()))?;
        Ok(CpuTensor::new(data.to_vec(), shape))
    }

    fn download(&self, t: &CpuTensor) -> BResult<Vec<f32>> {
        Ok(t.data.clone())
    }

    fn shape<'a>(&self, t: &'a CpuTensor) -> &'a [usize] {
        &t.shape
    }

    fn zeros(&self, shape: &[usize]) -> BResult<CpuTensor> {
        Ok(CpuTensor::zeros(shape))
    }

    fn reshape(&self, mut t: CpuTensor, shape: &[usize]) -> BResult<CpuTensor> {
        check(t.data.len() == shape.iter().product::<usize>(), || format!("reshape: {:?} to {shape:?}", t.shape))?;
        t.shape = shape.to_vec();
        Ok(t)
    }

    fn patchify(&self, x: &CpuTensor, p: usize) -> BResult<CpuTensor> {
        let [b, c, h, w] = <[usize; 4]>::try_from(x.shape.as_slice()).map_err(|_| BackendError::Shape(format!("patchify: {:?}", x.shape)))?;
        let d = image_dims([b, c, h, w], p)?;
        let mut rows = CpuTensor::zeros(&[b, d.li, c * p * p]);
        ops::patchify(&d, &x.data, &mut rows.data);
        Ok(rows)
    }

    fn patchify_backward(&self, d_rows: &CpuTensor, image: [usize; 4], p: usize) -> BResult<CpuTensor> {
        let d = image_dims(image, p)?;
        check(d_rows.data.len() == image.iter().product(), || format!("patchify_backward: {:?} for {image:?}", d_rows.shape))?;
        let mut dx = CpuTensor::zeros(&image);
        ops::patchify_backward(&d, &d_rows.data, &mut dx.data);
        Ok(dx)
    }

    fn unpatchify(&self, rows: &CpuTensor, image: [usize; 4], p: usize) -> BResult<CpuTensor> {
        let d = image_dims(image, p)?;
        check(rows.data.len() == image.iter().product(), || format!("unpatchify: {:?} for {image:?}", rows.shape))?;
        let mut x = CpuTensor::zeros(&image);
        ops::unpatchify(&d, &rows.data, &mut x.data);
        Ok(x)
    }

    fn unpatchify_backward(&self, dx: &CpuTensor, p: usize) -> BResult<CpuTensor> {
        let image = <[usize; 4]>::try_from(dx.shape.as_slice()).map_err(|_| BackendError::Shape(format!("unpatchify_backward: {:?}", dx.shape)))?;
        let d = image_dims(image, p)?;
        let mut rows = CpuTensor::zeros(&[d.b, d.li, p * p * d.c]);
        ops::unpatchify_backward(&d, &dx.data, &mut rows.data);
        Ok(rows)
    }

    fn concat_tokens(&self, a: &CpuTensor, b: &CpuTensor) -> BResult<CpuTensor> {
        let ((ba, la, da), (bb, lb, db)) = (a.bld(), b.bld());
        check(ba == bb && da == db, || format!("concat_tokens: {:?} + {:?}", a.shape, b.shape))?;
        let mut out = Vec::with_capacity(a.data.len() + b.data.len());
        for bi in 0..ba {
            out.extend_from_slice(&a.data[bi * la * da..(bi + 1) * la * da]);
            out.extend_from_slice(&b.data[bi * lb * db..(bi + 1) * lb * db]);
        }
        Ok(CpuTensor::new(out, &[ba, la + lb, da]))
    }

    fn split_tokens(&self, x: &CpuTensor, la: usize) -> BResult<(CpuTensor, CpuTensor)> {
        let (b, l, d) = x.bld();
        check(la <= l, || format!("split_tokens: {la} of {:?}", x.shape))?;
        let (mut a, mut rest) = (Vec::with_capacity(b * la * d), Vec::with_capacity(b * (l - la) * d));
        for row in x.data.chunks(l * d) {
            a.extend_from_slice(&row[..la * d]);
            rest.extend_from_slice(&row[la * d..]);
        }
        Ok((CpuTensor::new(a, &[b, la, d]), CpuTensor::new(rest, &[b, l - la, d])))
    }

    fn linear(&self, x: &CpuTensor, w: &CpuTensor, b: Option<&CpuTensor>) -> BResult<CpuTensor> {
        let (m, k) = match w.shape.as_slice() {
            [m, k] => (*m, *k),
            s => return Err(BackendError::Shape(format!("linear weight must be 2-D, got {s:?}"))),
        };
        check(x.last() == k, || format!("linear: x {:?} with weight {:?}", x.shape, w.shape))?;
        if let Some(b) = b {
            check(b.shape == [m], || format!("linear: bias {:?} for weight {:?}", b.shape, w.shape))?;
        }
        let n = x.rows();
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("x has a shape") = m;
        let mut y = CpuTensor::zeros(&shape);
        if let Some(b) = b {
            y.data.par_chunks_mut(m).for_each(|row| row.copy_from_slice(&b.data));
        }
        let threads = self.threads();
        self.run(|| matmul(n, m, k, &mut y.data, m, View::rows(&x.data, k), View::transposed(&w.data, k), b.is_some(), threads));
        Ok(y)
    }

    fn linear_backward(&self, x: &CpuTensor, w: &CpuTensor, dy: &CpuTensor, need_dx: bool, need_db: bool) -> BResult<LinearGrads<CpuTensor>> {
        let (m, k) = (w.shape[0], w.last());
        check(dy.last() == m && x.last() == k && x.rows() == dy.rows(), || {
            format!("linear_backward: x {:?}, w {:?}, dy {:?}", x.shape, w.shape, dy.shape)
        })?;
        let n = x.rows();
        let threads = self.threads();
        Ok(self.run(|| {
            let dx = need_dx.then(|| {
                let mut dx = CpuTensor::zeros(&x.shape);
                matmul(n, k, m, &mut dx.data, k, View::rows(&dy.data, m), View::rows(&w.data, k), false, threads);
                dx
            });
            let mut dw = CpuTensor::zeros(&w.shape);
            matmul(m, k, n, &mut dw.data, k, View::transposed(&dy.data, m), View::rows(&x.data, k), false, threads);
            let db = need_db.then(|| {
                let mut db = vec![0.0f32; m];
                for row in dy.data.chunks(m) {
                    for (a, &g) in db.iter_mut().zip(row) {
                        *a += g;
                    }
                }
                CpuTensor::new(db, &[m])
            });
            LinearGrads { dx, dw, db }
        }))
    }

    fn rmsnorm(&self, x: &CpuTensor, gain: Option<&CpuTensor>, eps: f64) -> BResult<(CpuTensor, CpuTensor)> {
        let d = x.last();
        if let Some(g) = gain {
            check(g.shape == [d], || format!("rmsnorm: gain {:?} for {:?}", g.shape, x.shape))?;
        }
        let mut y = CpuTensor::zeros(&x.shape);
        let mut rstd = CpuTensor::zeros(&[x.rows()]);
        let g = gain.map(|g| g.data.as_slice());
        self.run(|| {
            y.data.par_chunks_mut(d * 64).zip(x.data.par_chunks(d * 64)).zip(rstd.data.par_chunks_mut(64)).for_each(|((y, x), r)| {
                ops::rmsnorm_forward(x, g, eps, y, r, d);
            })
        });
        Ok((y, rstd))
    }

    fn rmsnorm_backward(&self, x: &CpuTensor, gain: Option<&CpuTensor>, rstd: &CpuTensor, dy: &CpuTensor) -> BResult<(CpuTensor, Option<CpuTensor>)> {
        same_shape(x, dy, "rmsnorm_backward")?;
        let d = x.last();
        let mut dx = CpuTensor::zeros(&x.shape);
        let mut dg = gain.map(|_| vec![0.0f32; d]);
        ops::rmsnorm_backward(&x.data, gain.map(|g| g.data.as_slice()), &rstd.data, &dy.data, &mut dx.data, dg.as_deref_mut(), d);
        Ok((dx, dg.map(|g| CpuTensor::new(g, &[d]))))
    }

    fn mvsplit(&self, x: &CpuTensor, u: &CpuTensor, alpha: &CpuTensor, beta: &CpuTensor, eps: f64, li: usize) -> BResult<(CpuTensor, CpuTensor)> {
        same_shape(x, u, "mvsplit")?;
        let (b, l, d) = x.bld();
        check(alpha.shape == [d] && beta.shape == [d], || format!("mvsplit: alpha {:?}, beta {:?} for D={d}", alpha.shape, beta.shape))?;
        let mut z = CpuTensor::zeros(&x.shape);
        let mut rstd = CpuTensor::zeros(&[b * l]);
        self.run(|| {
            z.data
                .par_chunks_mut(l * d)
                .zip(rstd.data.par_chunks_mut(l))
                .zip(x.data.par_chunks(l * d).zip(u.data.par_chunks(l * d)))
                .for_each(|((z, r), (x, u))| ops::mvsplit_forward(x, u, &alpha.data, &beta.data, eps, z, r, (1, l, d, li)));
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
        same_shape(x, u, "mvsplit_backward")?;
        same_shape(x, dz, "mvsplit_backward")?;
        let (_, l, d) = x.bld();
        let mut dx = CpuTensor::zeros(&x.shape);
        let mut du = CpuTensor::zeros(&x.shape);
        let partial: Vec<(Vec<f32>, Vec<f32>)> = self.run(|| {
            dx.data
                .par_chunks_mut(l * d)
                .zip(du.data.par_chunks_mut(l * d))
                .enumerate()
                .map(|(bi, (dx, du))| {
                    let (mut da, mut db) = (vec![0.0f32; d], vec![0.0f32; d]);
                    let r = bi * l * d..(bi + 1) * l * d;
                    ops::mvsplit_backward(
                        &x.data[r.clone()],
                        &u.data[r.clone()],
                        &alpha.data,
                        &beta.data,
                        &rstd.data[bi * l..(bi + 1) * l],
                        &dz.data[r],
                        dx,
                        du,
                        &mut da,
                        &mut db,
                        (1, l, d, li),
                    );
                    (da, db)
                })
                .collect()
        });
        let (mut dalpha, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
        for (da, db) in partial {
            for c in 0..d {
                dalpha[c] += da[c];
                dbeta[c] += db[c];
            }
        }
        Ok(MvSplitGrads { dx, du, dalpha: CpuTensor::new(dalpha, &[d]), dbeta: CpuTensor::new(dbeta, &[d]) })
    }

    fn residual_rmsnorm(&self, x: &CpuTensor, u: &CpuTensor, lambda: Option<&CpuTensor>, eps: f64) -> BResult<(CpuTensor, CpuTensor)> {
        self.residual_forward(x, u, lambda, eps)
    }

    fn residual_rmsnorm_backward(&self, x: &CpuTensor, u: &CpuTensor, lambda: Option<&CpuTensor>, rstd: &CpuTensor, dz: &CpuTensor) -> BResult<ResidualGrads<CpuTensor>> {
        self.residual_backward(x, u, lambda, rstd, dz)
    }

    fn rope_qknorm(&self, x: &CpuTensor, cos: &CpuTensor, sin: &CpuTensor, nh: usize, li: usize, eps: f64) -> BResult<(CpuTensor, CpuTensor)> {
        let (b, l, d) = x.bld();
        let dh = d / nh;
        check(cos.data.len() == li * dh / 2 && sin.data.len() == cos.data.len(), || format!("rope tables {:?} for li={li}, dh={dh}", cos.shape))?;
        let mut r = x.data.clone();
        ops::rope_apply(&mut r, &cos.data, &sin.data, b, l, li, nh, dh, false);
        let mut y = CpuTensor::zeros(&x.shape);
        let mut rstd = CpuTensor::zeros(&[b * l * nh]);
        ops::rmsnorm_forward(&r, None, eps, &mut y.data, &mut rstd.data, dh);
        Ok((y, rstd))
    }

    fn rope_qknorm_backward(&self, x: &CpuTensor, cos: &CpuTensor, sin: &CpuTensor, rstd: &CpuTensor, dy: &CpuTensor, nh: usize, li: usize) -> BResult<CpuTensor> {
        same_shape(x, dy, "rope_qknorm_backward")?;
        let (b, l, d) = x.bld();
        let dh = d / nh;
        let mut r = x.data.clone();
        ops::rope_apply(&mut r, &cos.data, &sin.data, b, l, li, nh, dh, false);
        let mut dx = CpuTensor::zeros(&x.shape);
        ops::rmsnorm_backward(&r, None, &rstd.data, &dy.data, &mut dx.data, None, dh);
        ops::rope_apply(&mut dx.data, &cos.data, &sin.data, b, l, li, nh, dh, true);
        Ok(dx)
    }

    fn attention(&self, q: &CpuTensor, k: &CpuTensor, v: &CpuTensor, nh: usize) -> BResult<(CpuTensor, CpuTensor)> {
        same_shape(q, k, "attention")?;
        same_shape(q, v, "attention")?;
        let (b, l, d) = q.bld();
        check(nh > 0 && d % nh == 0, || format!("attention: D={d} with {nh} heads"))?;
        let (o, lse) = self.run(|| attention::forward(&q.data, &k.data, &v.data, b, l, nh, d / nh));
        Ok((CpuTensor::new(o, &q.shape), CpuTensor::new(lse, &[b, nh, l])))
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
        same_shape(q, d_o, "attention_backward")?;
        let (b, l, d) = q.bld();
        let (dq, dk, dv) = self.run(|| attention::backward(&q.data, &k.data, &v.data, &o.data, &lse.data, &d_o.data, b, l, nh, d / nh));
        Ok((CpuTensor::new(dq, &q.shape), CpuTensor::new(dk, &q.shape), CpuTensor::new(dv, &q.shape)))
    }

    fn swiglu(&self, gv: &CpuTensor) -> BResult<CpuTensor> {
        check(gv.last() % 2 == 0, || format!("swiglu: odd feature size {:?}", gv.shape))?;
        let m = gv.last() / 2;
        let mut shape = gv.shape.clone();
        *shape.last_mut().expect("gv has a shape") = m;
        let mut y = CpuTensor::zeros(&shape);
        self.run(|| y.data.par_chunks_mut(m * 64).zip(gv.data.par_chunks(2 * m * 64)).for_each(|(y, gv)| ops::swiglu_forward(gv, y, m)));
        Ok(y)
    }

    fn swiglu_backward(&self, gv: &CpuTensor, dy: &CpuTensor) -> BResult<CpuTensor> {
        let m = gv.last() / 2;
        check(dy.data.len() * 2 == gv.data.len(), || format!("swiglu_backward: gv {:?}, dy {:?}", gv.shape, dy.shape))?;
        let mut dgv = CpuTensor::zeros(&gv.shape);
        self.run(|| {
            dgv.data
                .par_chunks_mut(2 * m * 64)
                .zip(gv.data.par_chunks(2 * m * 64).zip(dy.data.par_chunks(m * 64)))
                .for_each(|(dgv, (gv, dy))| ops::swiglu_backward(gv, dy, dgv, m))
        });
        Ok(dgv)
    }

    fn mse(&self, pred: &CpuTensor, target: &CpuTensor) -> BResult<(CpuTensor, CpuTensor)> {
        same_shape(pred, target, "mse")?;
        let loss: f64 = pred.data.iter().zip(&target.data).map(|(&p, &t)| ((p - t) as f64).powi(2)).sum::<f64>() / pred.data.len() as f64;
        let mut d = CpuTensor::zeros(&pred.shape);
        ops::mse_backward(&pred.data, &target.data, 1.0, &mut d.data);
        Ok((CpuTensor::new(vec![loss as f32], &[1]), d))
    }

    fn axpby(&self, a: f32, x: &CpuTensor, b: f32, y: &CpuTensor) -> BResult<CpuTensor> {
        same_shape(x, y, "axpby")?;
        let data = x.data.iter().zip(&y.data).map(|(&x, &y)| a * x + b * y).collect();
        Ok(CpuTensor::new(data, &x.shape))
    }

    fn sum_squares(&self, ts: &[&CpuTensor]) -> BResult<f64> {
        Ok(ts.iter().map(|t| t.data.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>()).sum())
    }

    fn adamw(&self, opt: &AdamW, step: u64, grad_scale: f64, p: &mut CpuTensor, g: &CpuTensor, m: &mut CpuTensor, v: &mut CpuTensor) -> BResult<()> {
        same_shape(p, g, "adamw")?;
        same_shape(p, m, "adamw")?;
        same_shape(p, v, "adamw")?;
        ops::adamw_step(opt, step, grad_scale, &mut p.data, &g.data, &mut m.data, &mut v.data);
        Ok(())
    }

    fn gather_rows(&self, table: &CpuTensor, idx: &[u32]) -> BResult<CpuTensor> {
        let e = table.last();
        let vocab = table.rows();
        let mut out = Vec::with_capacity(idx.len() * e);
        for &i in idx {
            check((i as usize) < vocab, || format!("gather_rows: index {i} of {vocab} rows"))?;
            out.extend_from_slice(&table.data[i as usize * e..(i as usize + 1) * e]);
        }
        Ok(CpuTensor::new(out, &[idx.len(), e]))
    }

    fn scatter_add_rows(&self, dy: &CpuTensor, idx: &[u32], vocab: usize) -> BResult<CpuTensor> {
        let e = dy.last();
        check(dy.rows() == idx.len(), || format!("scatter_add_rows: {:?} for {} indices", dy.shape, idx.len()))?;
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
