//! The LayerScale / post-norm merge z = RMSNorm(x + λ⊙u) on the device (reference:
//! `mvdit_core::ops::scaled_residual_rmsnorm_*`), replacing the trait's host fallback.
//!
//! Rows are independent (no token means, unlike MV-Split), so forward and backward are one
//! row kernel each (`residual.wgsl`, `residual_bwd.wgsl`: one invocation or one subgroup per row); dλ = Σ_rows ds⊙u is a chunked
//! column reduction (`residual_dl.wgsl`) finished by the shared column-sum passes.

use crate::gpu::{GpuDevice, Grid};
use crate::{check, f, u, GpuBackend, GpuTensor, COL_CHUNK};
use mvdit_core::backend::residual_check;
use mvdit_core::{BResult, ResidualGrads};

impl<D: GpuDevice> GpuBackend<D> {
    /// x, u: [.., D], lambda: [D] or None (ones) → (z: x's shape, rstd: [rows]).
    pub(crate) fn residual_forward(&self, x: &GpuTensor<D>, uu: &GpuTensor<D>, lambda: Option<&GpuTensor<D>>, eps: f64) -> BResult<(GpuTensor<D>, GpuTensor<D>)> {
        let d = residual_check(&x.shape, &uu.shape, lambda.map(|l| l.shape.as_slice()))?;
        let rows = x.len / d;
        let z = self.alloc(&x.shape)?;
        let rstd = self.alloc(&[rows])?;
        let params = [u(rows), u(d), f(eps as f32), u32::from(lambda.is_some())];
        self.run_rows("residual", &params, &[&x.buf, &uu.buf, self.opt(lambda), &z.buf, &rstd.buf], rows)?;
        Ok((z, rstd))
    }

    /// → dx, du: x's shape; dλ: [D] when a λ is given.
    pub(crate) fn residual_backward(
        &self,
        x: &GpuTensor<D>,
        uu: &GpuTensor<D>,
        lambda: Option<&GpuTensor<D>>,
        rstd: &GpuTensor<D>,
        dz: &GpuTensor<D>,
    ) -> BResult<ResidualGrads<GpuTensor<D>>> {
        let d = residual_check(&x.shape, &uu.shape, lambda.map(|l| l.shape.as_slice()))?;
        let rows = x.len / d;
        check(dz.shape == x.shape && rstd.len == rows, || {
            format!("residual_rmsnorm_backward: x {:?}, dz {:?}, rstd {:?}", x.shape, dz.shape, rstd.shape)
        })?;
        let dx = self.alloc(&x.shape)?;
        let du = self.alloc(&x.shape)?;
        let params = [u(rows), u(d), u32::from(lambda.is_some())];
        self.run_rows("residual_bwd", &params, &[&x.buf, &uu.buf, self.opt(lambda), &rstd.buf, &dz.buf, &dx.buf, &du.buf], rows)?;
        let dlambda = match lambda {
            Some(_) => {
                // ds = dx: partial column sums of ds⊙u per chunk of rows, then the chunk sums.
                let chunks = rows.div_ceil(COL_CHUNK).max(1);
                let part = self.alloc(&[chunks, d])?;
                let n = chunks * d;
                self.ctx.run("residual_dl", &[u(rows), u(d), u(COL_CHUNK), u(n)], &[&dx.buf, &uu.buf, &part.buf], Grid::Threads(n as u64))?;
                Some(self.sum_rows(part, d)?)
            }
            None => None,
        };
        Ok(ResidualGrads { dx, du, dlambda })
    }
}
