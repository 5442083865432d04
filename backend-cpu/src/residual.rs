//! The LayerScale / post-norm merge z = RMSNorm(x + λ⊙u) on the CPU: the core reference op
//! (`ops::scaled_residual_rmsnorm_*`) in f32 over all rows. It is element-wise and memory-bound
//! (a few passes over [N, D]), so it runs on the calling thread; it uses only `CpuTensor`'s
//! fields and `check`, so it does not depend on how the GEMMs are threaded.

use crate::{check, Cpu, CpuTensor};
use mvdit_core::backend::residual_check;
use mvdit_core::ops;
use mvdit_core::{BResult, ResidualGrads};

impl Cpu {
    pub(crate) fn residual_forward(&self, x: &CpuTensor, u: &CpuTensor, lambda: Option<&CpuTensor>, eps: f64) -> BResult<(CpuTensor, CpuTensor)> {
        let d = residual_check(&x.shape, &u.shape, lambda.map(|l| l.shape.as_slice()))?;
        let mut z = CpuTensor::zeros(&x.shape);
        let mut rstd = CpuTensor::zeros(&[x.data.len() / d]);
        ops::scaled_residual_rmsnorm_forward(&x.data, &u.data, lambda.map(|l| l.data.as_slice()), eps, &mut z.data, &mut rstd.data, d);
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
        check(dz.shape == x.shape && rstd.data.len() * d == x.data.len(), || {
            format!("residual_rmsnorm_backward: x {:?}, dz {:?}, rstd {:?}", x.shape, dz.shape, rstd.shape)
        })?;
        let mut dx = CpuTensor::zeros(&x.shape);
        let mut du = CpuTensor::zeros(&x.shape);
        let mut dlambda = lambda.map(|_| CpuTensor::zeros(&[d]));
        ops::scaled_residual_rmsnorm_backward(
            &x.data,
            &u.data,
            lambda.map(|l| l.data.as_slice()),
            &rstd.data,
            &dz.data,
            &mut dx.data,
            &mut du.data,
            dlambda.as_mut().map(|g| g.data.as_mut_slice()),
            d,
        );
        Ok(ResidualGrads { dx, du, dlambda })
    }
}
