//! The linear layers' team jobs: several GEMMs of one input in one job (q/k/v, w1/w3), the
//! weight and input gradients with per-block partial sums, and the bias gradients' column sums.

use super::*;

impl Cpu {
    /// ys[i] = x·ws[i]ᵀ + bs[i], all GEMMs in one team job.
    pub(crate) fn linears(&self, x: &CpuTensor, ws: &[&CpuTensor], bs: &[Option<&CpuTensor>]) -> BResult<Vec<CpuTensor>> {
        check(ws.len() == bs.len() && !ws.is_empty(), || format!("linear: {} weights, {} biases", ws.len(), bs.len()))?;
        let k = x.last();
        let mut ms = Vec::with_capacity(ws.len());
        for (w, b) in ws.iter().zip(bs) {
            let m = match w.shape.as_slice() {
                [m, _] => *m,
                s => return Err(BackendError::Shape(format!("linear weight must be 2-D, got {s:?}"))),
            };
            check(w.shape[1] == k && !x.shape.is_empty(), || format!("linear: x {:?} with weight {:?}", x.shape, w.shape))?;
            if let Some(b) = b {
                check(b.shape == [m], || format!("linear: bias {:?} for weight {:?}", b.shape, w.shape))?;
            }
            ms.push(m);
        }
        let n = x.rows();
        let mut ys: Vec<CpuTensor> = ms
            .iter()
            .map(|&m| {
                let mut shape = x.shape.clone();
                *shape.last_mut().expect("x has a shape") = m;
                CpuTensor::uninit(&shape)
            })
            .collect();
        let jobs = ys
            .iter_mut()
            .zip(ws.iter().zip(bs))
            .zip(&ms)
            .map(|((y, (w, b)), &m)| Job {
                m: n,
                n: m,
                k,
                dst: &mut y.data,
                ldd: m,
                a: View::rows(&x.data, k),
                b: View::transposed(&w.data, k),
                bias: b.map(|b| b.data.as_slice()),
            })
            .collect();
        matmul::run(&self.team, jobs);
        Ok(ys)
    }

    /// Gradients of [`Cpu::linears`]: dw[i] = dys[i]ᵀ·x, db[i] when asked for, and (when
    /// `need_dx`) dx = acc + Σ dys[i]·ws[i], accumulated into acc's buffer; one team job.
    #[allow(clippy::type_complexity)]
    pub(crate) fn linear_grads(
        &self,
        x: &CpuTensor,
        ws: &[&CpuTensor],
        dys: &[&CpuTensor],
        need_dx: bool,
        need_db: &[bool],
        acc: Option<CpuTensor>,
    ) -> BResult<(Option<CpuTensor>, Vec<CpuTensor>, Vec<Option<CpuTensor>>)> {
        check(ws.len() == dys.len() && ws.len() == need_db.len() && !ws.is_empty(), || {
            format!("linear_backward: {} weights, {} dys, {} need_db", ws.len(), dys.len(), need_db.len())
        })?;
        let (k, n) = (x.last(), x.rows());
        let mut ms = Vec::with_capacity(ws.len());
        for (w, dy) in ws.iter().zip(dys) {
            let m = match w.shape.as_slice() {
                [m, _] => *m,
                s => return Err(BackendError::Shape(format!("linear_backward: weight must be 2-D, got {s:?}"))),
            };
            check(dy.last() == m && w.shape[1] == k && x.rows() == dy.rows() && !x.shape.is_empty() && !dy.shape.is_empty(), || {
                format!("linear_backward: x {:?}, w {:?}, dy {:?}", x.shape, w.shape, dy.shape)
            })?;
            ms.push(m);
        }
        if let Some(a) = &acc {
            check(a.shape == x.shape, || format!("linear_backward: acc {:?} for x {:?}", a.shape, x.shape))?;
        }
        let accumulate = acc.is_some();
        let mut dx = need_dx.then(|| acc.unwrap_or_else(|| CpuTensor::uninit(&x.shape)));
        let mut dws: Vec<CpuTensor> = ws.iter().map(|w| CpuTensor::uninit(&w.shape)).collect();
        let g = matmul::Grads { x: &x.data, k, ws: ws.iter().map(|w| w.data.as_slice()).collect(), dys: dys.iter().map(|d| d.data.as_slice()).collect(), ms };
        let parts = matmul::grad_parts(&self.team, &g);
        let mut partial = CpuTensor::uninit(&[(parts - 1) * k * g.ms.iter().sum::<usize>()]);
        let mut dw_bufs: Vec<&mut [f32]> = dws.iter_mut().map(|w| w.data.as_mut_slice()).collect();
        matmul::grads(&self.team, &g, dx.as_mut().map(|d| (d.data.as_mut_slice(), accumulate)), &mut dw_bufs, &mut partial.data);
        self.add_partials(&mut dw_bufs, &partial.data, parts - 1);
        let ms = g.ms;
        let db = dys.iter().zip(&ms).zip(need_db).map(|((dy, &m), &need)| need.then(|| self.column_sums(&dy.data, n, m))).collect();
        Ok((dx, dws, db))
    }

    /// dws[i] += Σ_p part p of partial (each part holds every dw, one after another).
    pub(crate) fn add_partials(&self, dws: &mut [&mut [f32]], partial: &[f32], parts: usize) {
        let total: usize = dws.iter().map(|w| w.len()).sum();
        if parts == 0 || total == 0 {
            return;
        }
        let outs: Vec<Out> = dws.iter_mut().map(|w| Out::new(w)).collect();
        self.rows(total, parts + 1, |r| {
            let mut at = 0;
            for o in &outs {
                let (s, e) = (r.start.max(at), r.end.min(at + o.len()));
                if s < e {
                    // SAFETY: values s..e of the concatenated dws are this block's alone.
                    let dst = unsafe { o.part(s - at, e - s) };
                    for p in 0..parts {
                        kernels::add_into(dst, &partial[p * total + s..p * total + e]);
                    }
                }
                at += o.len();
            }
        });
    }

    /// Σ over the n rows of dy: [n, m] → [m].
    pub(crate) fn column_sums(&self, dy: &[f32], n: usize, m: usize) -> CpuTensor {
        let parts = self.blocks(n, m);
        let mut partial = vec![0.0f32; parts * m];
        let out = Out::new(&mut partial);
        self.team.run(parts, |i| {
            let r = split(n, parts, i);
            // SAFETY: block i's own partial row.
            kernels::column_sums(&dy[r.start * m..r.end * m], unsafe { out.part(i * m, m) }, m);
        });
        let mut t = CpuTensor::uninit(&[m]);
        t.data.copy_from_slice(&reduce(&partial, m));
        t
    }
}
