//! The LayerScale / post-norm merge z = RMSNorm(x + λ⊙u) on the CPU: the core reference op
//! (`ops::scaled_residual_rmsnorm_*`, f32) over chunks of rows on the backend's pool.

use crate::{check, Cpu, CpuTensor};
use mvdit_core::backend::residual_check;
use mvdit_core::ops;
use mvdit_core::{BResult, ResidualGrads};
use rayon::prelude::*;

/// Rows per parallel chunk.
const ROWS: usize = 64;

impl Cpu {
    pub(crate) fn residual_forward(&self, x: &CpuTensor, u: &CpuTensor, lambda: Option<&CpuTensor>, eps: f64) -> BResult<(CpuTensor, CpuTensor)> {
        let d = residual_check(&x.shape, &u.shape, lambda.map(|l| l.shape.as_slice()))?;
        let lam = lambda.map(|l| l.data.as_slice());
        let mut z = CpuTensor::zeros(&x.shape);
        let mut rstd = CpuTensor::zeros(&[x.rows()]);
        self.run(|| {
            z.data
                .par_chunks_mut(d * ROWS)
                .zip(rstd.data.par_chunks_mut(ROWS))
                .zip(x.data.par_chunks(d * ROWS).zip(u.data.par_chunks(d * ROWS)))
                .for_each(|((z, r), (x, u))| ops::scaled_residual_rmsnorm_forward(x, u, lam, eps, z, r, d))
        });
        Ok((z, rstd))
    }

    pub(crate) fn residual_backward(
        &self,
        x: &CpuTensor,
        u: &CpuTensor,
        lambda: Option<&CpuTensor>,
        rstd: &CpuTensor,
        dz: &CpuTensor,
    ) -> BResult<ResidualGrads<CpuTensor>> {
        let d = residual_check(&x.shape, &u.shape, lambda.map(|l| l.shape.as_slice()))?;
        check(dz.shape == x.shape && rstd.data.len() == x.rows(), || {
            format!("residual_rmsnorm_backward: x {:?}, dz {:?}, rstd {:?}", x.shape, dz.shape, rstd.shape)
        })?;
        let lam = lambda.map(|l| l.data.as_slice());
        let mut dx = CpuTensor::zeros(&x.shape);
        let mut du = CpuTensor::zeros(&x.shape);
        let partial: Vec<Vec<f32>> = self.run(|| {
            dx.data
                .par_chunks_mut(d * ROWS)
                .zip(du.data.par_chunks_mut(d * ROWS))
                .enumerate()
                .map(|(c, (dx, du))| {
                    let rows = c * ROWS..c * ROWS + dx.len() / d;
                    let span = rows.start * d..rows.end * d;
                    let mut dl = lam.map(|_| vec![0.0f32; d]);
                    ops::scaled_residual_rmsnorm_backward(
                        &x.data[span.clone()],
                        &u.data[span.clone()],
                        lam,
                        &rstd.data[rows],
                        &dz.data[span],
                        dx,
                        du,
                        dl.as_deref_mut(),
                        d,
                    );
                    dl.unwrap_or_default()
                })
                .collect()
        });
        let dlambda = lam.map(|_| {
            let mut g = vec![0.0f32; d];
            for p in &partial {
                g.iter_mut().zip(p).for_each(|(a, b)| *a += b);
            }
            CpuTensor::new(g, &[d])
        });
        Ok(ResidualGrads { dx, du, dlambda })
    }
}
