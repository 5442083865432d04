//! The `Backend` trait the model is written against.
//!
//! Tensors live on the backend's device (f32); the model only uploads inputs and downloads the
//! values a user asked for, so a GPU backend can keep a whole training step on the device.
//! Token tensors are [B, L, D]; `linear` treats every leading dimension as rows.
//! Each op's meaning is its reference in [`crate::ops`]; backends are tested against those.

use crate::dtype::Dtype;
use crate::ops::{AdamW, Conv2d, Heads};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// An optional device capability that a backend needs for a choice its caller made (f16
/// matmul operands, subgroup row kernels, cooperative-matrix products) and that a device may
/// lack: see [`BackendError::Unsupported`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// f16 arithmetic and 16-bit storage in shaders (wgpu: SHADER_F16; Vulkan: shaderFloat16
    /// and 16-bit storage buffer access).
    F16,
    /// Subgroup arithmetic in compute shaders.
    Subgroups,
    /// f16 cooperative matrices (tensor cores) of a shape a kernel takes.
    CooperativeMatrices,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BackendError {
    /// An allocation the device refused; `bytes` is the size asked for.
    OutOfMemory { bytes: u64 },
    /// Tensors whose shapes do not fit the op.
    Shape(String),
    /// Anything else the device reported.
    Device(String),
    /// The device lacks an optional capability that the options asked for (or need), with a
    /// message naming the device and what to do. Reads as a `Device` error.
    Unsupported(Capability, String),
}

impl BackendError {
    /// The optional capability whose absence this error reports, if that is what it reports.
    pub fn lacks(&self) -> Option<Capability> {
        match self {
            BackendError::Unsupported(c, _) => Some(*c),
            _ => None,
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::OutOfMemory { bytes } => write!(
                f,
                "out of device memory allocating {bytes} bytes (try block recompute or a smaller batch)"
            ),
            BackendError::Shape(s) => write!(f, "shape mismatch: {s}"),
            BackendError::Device(s) | BackendError::Unsupported(_, s) => write!(f, "device error: {s}"),
        }
    }
}

pub type BResult<T> = Result<T, BackendError>;

/// Checks the shapes of a scaled residual merge; returns D.
pub fn residual_check(x: &[usize], u: &[usize], lambda: Option<&[usize]>) -> BResult<usize> {
    let d = x.last().copied().unwrap_or(0);
    if x != u || d == 0 {
        return Err(BackendError::Shape(format!("residual_rmsnorm: x {x:?}, u {u:?}")));
    }
    if let Some(l) = lambda {
        if l != [d] {
            return Err(BackendError::Shape(format!("residual_rmsnorm: lambda {l:?} for D={d}")));
        }
    }
    Ok(d)
}

/// Checks a [`Backend::upload_packed`] call: a 16-bit dtype and one pattern per element.
pub fn packed_check(bits: usize, dtype: Dtype, shape: &[usize]) -> BResult<()> {
    if dtype == Dtype::F32 {
        return Err(BackendError::Shape("upload_packed: f32 is not a 16-bit dtype".into()));
    }
    let n: usize = shape.iter().product();
    if bits != n {
        return Err(BackendError::Shape(format!("upload_packed: {bits} values for shape {shape:?}")));
    }
    Ok(())
}

/// [B, H, W, C] of a channels-last image; a shape error naming `op` for any other rank.
pub fn image_check(shape: &[usize], op: &str) -> BResult<[usize; 4]> {
    match shape {
        [b, h, w, c] => Ok([*b, *h, *w, *c]),
        s => Err(BackendError::Shape(format!("{op}: image must be [B, H, W, C], got {s:?}"))),
    }
}

/// The sizes of a [`Backend::conv2d`] call after checking x [B, H, W, Ci], w [Co, Kh, Kw, Ci]
/// and the bias [Co]: ([B, H, W, Ci], [Co, Kh, Kw], [Ho, Wo]).
pub fn conv2d_check(x: &[usize], w: &[usize], b: Option<&[usize]>, conv: Conv2d) -> BResult<([usize; 4], [usize; 3], [usize; 2])> {
    let [bn, h, wd, ci] = image_check(x, "conv2d")?;
    let (co, kh, kw) = match w {
        [co, kh, kw, c] if *c == ci => (*co, *kh, *kw),
        s => return Err(BackendError::Shape(format!("conv2d: weight {s:?} for {ci} input channels (want [Co, Kh, Kw, {ci}])"))),
    };
    if let Some(b) = b.filter(|b| *b != [co]) {
        return Err(BackendError::Shape(format!("conv2d: bias {b:?} for {co} output channels")));
    }
    let (ho, wo) = conv.out_size(h, wd, kh, kw).ok_or_else(|| BackendError::Shape(format!("conv2d: {kh}x{kw} kernel, {conv:?} on a {h}x{wd} image")))?;
    Ok(([bn, h, wd, ci], [co, kh, kw], [ho, wo]))
}

/// Gradients of the MV-Split merge.
pub struct MvSplitGrads<T> {
    pub dx: T,
    pub du: T,
    pub dalpha: T,
    pub dbeta: T,
}

/// Gradients of the scaled residual merge (LayerScale / post-norm); `dlambda` only when a λ is given.
pub struct ResidualGrads<T> {
    pub dx: T,
    pub du: T,
    pub dlambda: Option<T>,
}

/// Gradients of a linear layer; `dx`/`db` only when asked for.
pub struct LinearGrads<T> {
    pub dx: Option<T>,
    pub dw: T,
    pub db: Option<T>,
}

/// Gradients of [`Backend::linear_multi`]: one dw (and db when asked for) per weight, and dx.
pub struct MultiLinearGrads<T> {
    pub dx: T,
    pub dw: Vec<T>,
    pub db: Vec<Option<T>>,
}

pub trait Backend {
    /// An f32 tensor on the device, with its shape.
    type Tensor;
    /// A tensor kept in 16 bits (f16 or bf16) on the device, with its shape: see [`Backend::unpack`].
    type Packed;

    fn name(&self) -> String;
    /// Bytes of the device's own memory where it has one and says (GPUs); `None`: host memory.
    fn device_memory(&self) -> Option<u64> {
        None
    }
    /// Whether matmul operands are rounded to 16 bits (f16 precision on a GPU): training then
    /// scales its loss so that small gradients stay in range (`loss_scale`, mode "auto").
    fn half_products(&self) -> bool {
        false
    }

    // --- memory ---------------------------------------------------------------------------
    fn upload(&self, data: &[f32], shape: &[usize]) -> BResult<Self::Tensor>;
    fn download(&self, t: &Self::Tensor) -> BResult<Vec<f32>>;
    fn shape<'a>(&self, t: &'a Self::Tensor) -> &'a [usize];
    fn zeros(&self, shape: &[usize]) -> BResult<Self::Tensor>;
    /// The same values under a new shape of equal size (no copy needed).
    fn reshape(&self, t: Self::Tensor, shape: &[usize]) -> BResult<Self::Tensor>;
    /// bits: [N] 16-bit patterns of `dtype` (F16 or Bf16) of a tensor of `shape` → kept in the
    /// backend's memory at 2 bytes a value (weights in 16 bits, compute in f32).
    fn upload_packed(&self, bits: &[u16], dtype: Dtype, shape: &[usize]) -> BResult<Self::Packed>;
    /// packed → out: the f32 tensor of its shape (reference: `dtype::unpack_into`, exact).
    fn unpack(&self, p: &Self::Packed) -> BResult<Self::Tensor>;

    // --- layout ---------------------------------------------------------------------------
    /// x: [B, C, H, W] → [B, Li, C*P*P] (reference: `ops::patchify`).
    fn patchify(&self, x: &Self::Tensor, p: usize) -> BResult<Self::Tensor>;
    /// d_rows: [B, Li, C*P*P] → dx: [B, C, H, W]; `image` = [B, C, H, W].
    fn patchify_backward(&self, d_rows: &Self::Tensor, image: [usize; 4], p: usize) -> BResult<Self::Tensor>;
    /// rows: [B, Li, P*P*C] → [B, C, H, W] (reference: `ops::unpatchify`).
    fn unpatchify(&self, rows: &Self::Tensor, image: [usize; 4], p: usize) -> BResult<Self::Tensor>;
    /// dx: [B, C, H, W] → d_rows: [B, Li, P*P*C].
    fn unpatchify_backward(&self, dx: &Self::Tensor, p: usize) -> BResult<Self::Tensor>;
    /// a: [B, La, D], b: [B, Lb, D] → [B, La+Lb, D].
    fn concat_tokens(&self, a: &Self::Tensor, b: &Self::Tensor) -> BResult<Self::Tensor>;
    /// x: [B, L, D] → ([B, La, D], [B, L−La, D]).
    fn split_tokens(&self, x: &Self::Tensor, la: usize) -> BResult<(Self::Tensor, Self::Tensor)>;

    // --- layers ---------------------------------------------------------------------------
    /// x: [.., K], w: [M, K], b: [M] → [.., M].
    fn linear(&self, x: &Self::Tensor, w: &Self::Tensor, b: Option<&Self::Tensor>) -> BResult<Self::Tensor>;
    fn linear_backward(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        dy: &Self::Tensor,
        need_dx: bool,
        need_db: bool,
    ) -> BResult<LinearGrads<Self::Tensor>>;
    /// Several linear layers of one input (the fused Q/K/V projection): ys[i] = x·ws[i]ᵀ + bs[i],
    /// ws[i]: [Mi, K], bs[i]: [Mi] or None (`bs` as long as `ws`).
    ///
    /// The provided body makes one [`Backend::linear`] per weight; a backend can override it to
    /// run them as one job (one pass over x, one thread hand-off).
    fn linear_multi(&self, x: &Self::Tensor, ws: &[&Self::Tensor], bs: &[Option<&Self::Tensor>]) -> BResult<Vec<Self::Tensor>> {
        if ws.len() != bs.len() || ws.is_empty() {
            return Err(BackendError::Shape(format!("linear_multi: {} weights, {} biases", ws.len(), bs.len())));
        }
        ws.iter().zip(bs).map(|(w, b)| self.linear(x, w, *b)).collect()
    }
    /// Backward of [`Backend::linear_multi`]: dw[i] = dys[i]ᵀ·x, db[i] when `need_db[i]`, and
    /// dx = acc + Σ dys[i]·ws[i], where `acc` (shape of x) is a gradient already flowing into x
    /// (a residual branch), consumed so a backend can accumulate into its buffer.
    ///
    /// The provided body: one [`Backend::linear_backward`] per weight, dx summed with
    /// [`Backend::axpby`] in order (acc first).
    fn linear_multi_backward(
        &self,
        x: &Self::Tensor,
        ws: &[&Self::Tensor],
        dys: &[&Self::Tensor],
        need_db: &[bool],
        acc: Option<Self::Tensor>,
    ) -> BResult<MultiLinearGrads<Self::Tensor>> {
        if ws.len() != dys.len() || ws.len() != need_db.len() || ws.is_empty() {
            return Err(BackendError::Shape(format!("linear_multi_backward: {} weights, {} dys, {} need_db", ws.len(), dys.len(), need_db.len())));
        }
        let (mut dw, mut db) = (Vec::with_capacity(ws.len()), Vec::with_capacity(ws.len()));
        let mut dx = acc;
        for i in 0..ws.len() {
            let g = self.linear_backward(x, ws[i], dys[i], true, need_db[i])?;
            let gdx = g.dx.ok_or_else(|| BackendError::Device(String::from("linear_backward returned no dx")))?;
            dx = Some(match &dx {
                Some(d) => self.axpby(1.0, d, 1.0, &gdx)?,
                None => gdx,
            });
            dw.push(g.dw);
            db.push(g.db);
        }
        Ok(MultiLinearGrads { dx: dx.expect("at least one weight"), dw, db })
    }
    /// x: [.., D] → (y, rstd: [rows]).
    fn rmsnorm(&self, x: &Self::Tensor, gain: Option<&Self::Tensor>, eps: f64) -> BResult<(Self::Tensor, Self::Tensor)>;
    /// → (dx, dgain when a gain is given).
    fn rmsnorm_backward(
        &self,
        x: &Self::Tensor,
        gain: Option<&Self::Tensor>,
        rstd: &Self::Tensor,
        dy: &Self::Tensor,
    ) -> BResult<(Self::Tensor, Option<Self::Tensor>)>;
    /// x, u: [B, L, D], alpha, beta: [D]; means over tokens [0, li) and [li, L) → (z, rstd: [B*L]).
    #[allow(clippy::too_many_arguments)]
    fn mvsplit(
        &self,
        x: &Self::Tensor,
        u: &Self::Tensor,
        alpha: &Self::Tensor,
        beta: &Self::Tensor,
        eps: f64,
        li: usize,
    ) -> BResult<(Self::Tensor, Self::Tensor)>;
    #[allow(clippy::too_many_arguments)]
    fn mvsplit_backward(
        &self,
        x: &Self::Tensor,
        u: &Self::Tensor,
        alpha: &Self::Tensor,
        beta: &Self::Tensor,
        rstd: &Self::Tensor,
        dz: &Self::Tensor,
        li: usize,
    ) -> BResult<MvSplitGrads<Self::Tensor>>;
    /// The LayerScale / post-norm merge z = RMSNorm(x + λ⊙u) (reference:
    /// `ops::scaled_residual_rmsnorm_forward`). x, u: [.., D], lambda: [D] (None = ones, the
    /// post-norm baseline) → (z, rstd: [rows]).
    ///
    /// The provided body computes on the host (download, reference op, upload): correct on any
    /// backend, and meant to be overridden by a device kernel.
    fn residual_rmsnorm(&self, x: &Self::Tensor, u: &Self::Tensor, lambda: Option<&Self::Tensor>, eps: f64) -> BResult<(Self::Tensor, Self::Tensor)> {
        residual_rmsnorm_host(self, x, u, lambda, eps)
    }
    /// → dx, du and dλ (when a λ is given). Host body as [`Backend::residual_rmsnorm`].
    fn residual_rmsnorm_backward(
        &self,
        x: &Self::Tensor,
        u: &Self::Tensor,
        lambda: Option<&Self::Tensor>,
        rstd: &Self::Tensor,
        dz: &Self::Tensor,
    ) -> BResult<ResidualGrads<Self::Tensor>> {
        residual_rmsnorm_backward_host(self, x, u, lambda, rstd, dz)
    }
    /// RoPE2D on tokens [0, li) then RMSNorm over each head (eps, no gain).
    /// x: [B, L, D] seen as [B, L, Nh, Dh]; cos, sin: [li, Dh/2] → (y, rstd: [B*L*Nh]).
    #[allow(clippy::too_many_arguments)]
    fn rope_qknorm(
        &self,
        x: &Self::Tensor,
        cos: &Self::Tensor,
        sin: &Self::Tensor,
        nh: usize,
        li: usize,
        eps: f64,
    ) -> BResult<(Self::Tensor, Self::Tensor)>;
    #[allow(clippy::too_many_arguments)]
    fn rope_qknorm_backward(
        &self,
        x: &Self::Tensor,
        cos: &Self::Tensor,
        sin: &Self::Tensor,
        rstd: &Self::Tensor,
        dy: &Self::Tensor,
        nh: usize,
        li: usize,
    ) -> BResult<Self::Tensor>;
    /// q, k, v: [B, L, D] seen as [B, L, Nh, Dh] → (o: [B, L, D], lse: [B, Nh, L]).
    fn attention(&self, q: &Self::Tensor, k: &Self::Tensor, v: &Self::Tensor, nh: usize) -> BResult<(Self::Tensor, Self::Tensor)>;
    /// → (dq, dk, dv).
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        o: &Self::Tensor,
        lse: &Self::Tensor,
        d_o: &Self::Tensor,
        nh: usize,
    ) -> BResult<(Self::Tensor, Self::Tensor, Self::Tensor)>;
    /// gv: [.., 2M] → [.., M].
    fn swiglu(&self, gv: &Self::Tensor) -> BResult<Self::Tensor>;
    fn swiglu_backward(&self, gv: &Self::Tensor, dy: &Self::Tensor) -> BResult<Self::Tensor>;

    // --- forward-only layers of the frozen networks (autoencoder, text encoder) --------------
    // Images are channels last: [B, H, W, C], i.e. a token sequence [B, H·W, C].

    /// x: [B, H, W, Ci], w: [Co, Kh, Kw, Ci], b: [Co] → [B, Ho, Wo, Co] (reference:
    /// `ops::conv2d`; Ho, Wo from `Conv2d::out_size`).
    fn conv2d(&self, x: &Self::Tensor, w: &Self::Tensor, b: Option<&Self::Tensor>, conv: Conv2d) -> BResult<Self::Tensor>;
    /// x: [B, N, C], gamma, beta: [C] → [B, N, C], statistics per image and run of C/groups
    /// channels (reference: `ops::group_norm`).
    fn group_norm(&self, x: &Self::Tensor, gamma: &Self::Tensor, beta: &Self::Tensor, groups: usize, eps: f64) -> BResult<Self::Tensor>;
    /// x·σ(x) element-wise (reference: `ops::silu`).
    fn silu(&self, x: &Self::Tensor) -> BResult<Self::Tensor>;
    /// x: [B, H, W, C] → [B, r·H, r·W, C] (reference: `ops::upsample_nearest`).
    fn upsample_nearest(&self, x: &Self::Tensor, r: usize) -> BResult<Self::Tensor>;
    /// x: [B, H, W, C] → [B, H/r, W/r, C·r²] (reference: `ops::pixel_unshuffle`).
    fn pixel_unshuffle(&self, x: &Self::Tensor, r: usize) -> BResult<Self::Tensor>;
    /// x: [B, H, W, C·r²] → [B, r·H, r·W, C] (reference: `ops::pixel_shuffle`).
    fn pixel_shuffle(&self, x: &Self::Tensor, r: usize) -> BResult<Self::Tensor>;
    /// q: [B, L, Hq·Dh], k, v: [B, L, Hkv·Dh], key_mask: [B, L] (1 attend, 0 padding)
    /// → o: [B, L, Hq·Dh] (reference: `ops::attention_masked`, whose doc fixes the rows that
    /// see no key).
    fn attention_masked(&self, q: &Self::Tensor, k: &Self::Tensor, v: &Self::Tensor, heads: Heads, causal: bool, key_mask: Option<&Self::Tensor>) -> BResult<Self::Tensor>;
    /// Rotate-half RoPE on every token: x: [B, L, Nh·Dh], cos, sin: [L, Dh/2] (reference:
    /// `ops::rope_apply` over all L tokens; tables from `ops::rope_tables_1d`).
    fn rope(&self, x: &Self::Tensor, cos: &Self::Tensor, sin: &Self::Tensor, nh: usize) -> BResult<Self::Tensor>;

    // --- loss, arithmetic, optimiser ------------------------------------------------------
    /// → ([1] mean squared error, d loss / d pred).
    fn mse(&self, pred: &Self::Tensor, target: &Self::Tensor) -> BResult<(Self::Tensor, Self::Tensor)>;
    /// a·x + b·y, same shapes.
    fn axpby(&self, a: f32, x: &Self::Tensor, b: f32, y: &Self::Tensor) -> BResult<Self::Tensor>;
    /// Σ over all tensors of Σ x² (in f64 on the host side of the sum): the global grad norm².
    fn sum_squares(&self, ts: &[&Self::Tensor]) -> BResult<f64>;
    /// In-place AdamW on p with gradient `grad_scale * g` (reference: `ops::adamw_step`).
    #[allow(clippy::too_many_arguments)]
    fn adamw(
        &self,
        opt: &AdamW,
        step: u64,
        grad_scale: f64,
        p: &mut Self::Tensor,
        g: &Self::Tensor,
        m: &mut Self::Tensor,
        v: &mut Self::Tensor,
    ) -> BResult<()>;
    /// table: [V, E], idx: [n] → [n, E] (class embeddings).
    fn gather_rows(&self, table: &Self::Tensor, idx: &[u32]) -> BResult<Self::Tensor>;
    /// dy: [n, E] → [V, E] with row idx[i] += dy[i].
    fn scatter_add_rows(&self, dy: &Self::Tensor, idx: &[u32], vocab: usize) -> BResult<Self::Tensor>;
}

/// The host body of [`Backend::residual_rmsnorm`]: download, reference op in f32, upload.
pub fn residual_rmsnorm_host<B: Backend + ?Sized>(be: &B, x: &B::Tensor, u: &B::Tensor, lambda: Option<&B::Tensor>, eps: f64) -> BResult<(B::Tensor, B::Tensor)> {
    let shape = be.shape(x).to_vec();
    let d = residual_check(&shape, be.shape(u), lambda.map(|l| be.shape(l)))?;
    let (xv, uv) = (be.download(x)?, be.download(u)?);
    let lv = lambda.map(|l| be.download(l)).transpose()?;
    let rows = xv.len() / d;
    let (mut z, mut rstd) = (vec![0.0f32; xv.len()], vec![0.0f32; rows]);
    crate::ops::scaled_residual_rmsnorm_forward(&xv, &uv, lv.as_deref(), eps, &mut z, &mut rstd, d);
    Ok((be.upload(&z, &shape)?, be.upload(&rstd, &[rows])?))
}

/// The host body of [`Backend::residual_rmsnorm_backward`].
pub fn residual_rmsnorm_backward_host<B: Backend + ?Sized>(
    be: &B,
    x: &B::Tensor,
    u: &B::Tensor,
    lambda: Option<&B::Tensor>,
    rstd: &B::Tensor,
    dz: &B::Tensor,
) -> BResult<ResidualGrads<B::Tensor>> {
    let shape = be.shape(x).to_vec();
    let d = residual_check(&shape, be.shape(u), lambda.map(|l| be.shape(l)))?;
    if be.shape(dz) != shape.as_slice() {
        return Err(BackendError::Shape(format!("residual_rmsnorm_backward: dz {:?} for x {shape:?}", be.shape(dz))));
    }
    let (xv, uv, rv, dzv) = (be.download(x)?, be.download(u)?, be.download(rstd)?, be.download(dz)?);
    if rv.len() * d != xv.len() {
        return Err(BackendError::Shape(format!("residual_rmsnorm_backward: rstd {:?} for x {shape:?}", be.shape(rstd))));
    }
    let lv = lambda.map(|l| be.download(l)).transpose()?;
    let (mut dx, mut du) = (vec![0.0f32; xv.len()], vec![0.0f32; xv.len()]);
    let mut dl = lv.as_ref().map(|_| vec![0.0f32; d]);
    crate::ops::scaled_residual_rmsnorm_backward(&xv, &uv, lv.as_deref(), &rv, &dzv, &mut dx, &mut du, dl.as_deref_mut(), d);
    Ok(ResidualGrads {
        dx: be.upload(&dx, &shape)?,
        du: be.upload(&du, &shape)?,
        dlambda: dl.map(|g| be.upload(&g, &[d])).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn a_missing_capability_reads_as_a_device_error() {
        let e = BackendError::Unsupported(Capability::F16, "precision f16 needs shaderFloat16".into());
        assert_eq!(e.to_string(), "device error: precision f16 needs shaderFloat16");
        assert_eq!(e.lacks(), Some(Capability::F16));
        assert_eq!(BackendError::Device("no adapter".into()).lacks(), None);
    }
}
