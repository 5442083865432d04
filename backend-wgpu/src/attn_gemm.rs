//! Attention on GPUs through materialised scores: per (sample, head) z = b·Nh + h, the batched
//! tiled matmul forms S_z = Q_z·K_zᵀ (Q, K, V read in place from [B, L, Nh, Dh]),
//! `attn_softmax` turns it into P in place (and writes lse), and O_z = P_z·V_z. Backward
//! recomputes S, forms dP = dO·Vᵀ, `attn_pds` makes P and dS = P·(dP − D)·scale in place, then
//! dQ = dS·K, dK = dSᵀ·Q, dV = Pᵀ·dO. Every product runs in the matmul kernels (the tiled one
//! reached about 15 TFLOP/s in f32 on an H200, the row-per-thread attention kernels ~0.04;
//! with f16 precision the products take the padded f16 path, on tensor cores where it has
//! them). Softmax, P and dS stay f32.
//!
//! The scores cost B·Nh·L² floats (two such buffers in backward), so this path is taken only
//! while they stay under [`SCORES_BYTES`]; longer sequences keep the workgroup-tiled kernels,
//! which never store them.

use crate::gpu::{GpuDevice, Grid};
use crate::matmul::Batch;
use crate::{f, u, GpuBackend, GpuTensor};
use mvdit_core::BResult;

/// Largest score matrix [B·Nh, L, L] kept, in bytes (also under every device's storage-binding
/// limit: lavapipe's is 128 MiB).
const SCORES_BYTES: usize = 128 << 20;

/// Attention dimensions: batch, tokens, heads, head width.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub b: usize,
    pub l: usize,
    pub nh: usize,
    pub dh: usize,
}

impl Dims {
    /// The batch of one GEMM per (sample, head) with operand batch offsets `a`, `b`, `c` and
    /// C's row stride.
    fn batch(self, a: (usize, usize), b: (usize, usize), c: (usize, usize), c_rs: usize) -> Batch {
        Batch { count: self.b * self.nh, nh: self.nh, a, b, c, c_rs }
    }

    /// Offsets of head (zb, zh) in a [B, L, Nh, Dh] tensor: (per sample, per head).
    fn head(self) -> (usize, usize) {
        (self.l * self.nh * self.dh, self.dh)
    }

    /// Offsets of head (zb, zh) in the scores [B·Nh, L, L].
    fn scores(self) -> (usize, usize) {
        (self.nh * self.l * self.l, self.l * self.l)
    }

    /// Row stride of Q, K, V, O.
    fn row(self) -> usize {
        self.nh * self.dh
    }
}

impl<D: GpuDevice> GpuBackend<D> {
    /// True when attention of these dimensions goes through materialised scores (GPU plans
    /// that allow it, scores under [`SCORES_BYTES`], one grid z per (sample, head)).
    pub(crate) fn attn_by_gemm(&self, d: Dims) -> bool {
        let bh = d.b * d.nh;
        let plan = self.ctx.matmul_plan();
        // The f16 path also keeps the products padded to 64 (see `matmul.rs`).
        let lp = if plan.f16 { d.l.next_multiple_of(64) } else { d.l };
        plan.tiled_attention && plan.attn_scores && d.l > 0 && bh > 0 && bh * lp * lp * 4 <= SCORES_BYTES && bh <= self.ctx.max_groups() as usize
    }

    /// S = Q·Kᵀ into `s` ([B·Nh, L, L]).
    fn scores(&self, q: &GpuTensor<D>, k: &GpuTensor<D>, d: Dims, s: &GpuTensor<D>) -> BResult<()> {
        let batch = d.batch(d.head(), d.head(), d.scores(), d.l);
        self.matmul_batched((d.l, d.l, d.dh), (&q.buf, d.row(), 1), (&k.buf, 1, d.row()), &s.buf, &batch)
    }

    /// o, lse ← attention(q, k, v); q, k, v, o: [B, L, Nh, Dh], lse: [B, Nh, L].
    pub(crate) fn attention_by_gemm(&self, (q, k, v): (&GpuTensor<D>, &GpuTensor<D>, &GpuTensor<D>), d: Dims, scale: f32, (o, lse): (&GpuTensor<D>, &GpuTensor<D>)) -> BResult<()> {
        let s = self.alloc(&[d.b * d.nh, d.l, d.l])?;
        self.scores(q, k, d, &s)?;
        let rows = d.b * d.nh * d.l;
        self.ctx.run("attn_softmax", &[u(rows), u(d.l), f(scale)], &[&s.buf, &lse.buf], Grid::Threads(rows as u64))?;
        let batch = d.batch(d.scores(), d.head(), d.head(), d.row());
        self.matmul_batched((d.l, d.dh, d.l), (&s.buf, d.l, 1), (&v.buf, d.row(), 1), &o.buf, &batch)
    }

    /// dq, dk, dv ← the gradients of attention, given lse and dd = rowsum(dO ⊙ O) ([B, Nh, L]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attention_backward_by_gemm(
        &self,
        (q, k, v): (&GpuTensor<D>, &GpuTensor<D>, &GpuTensor<D>),
        (lse, dd, d_o): (&GpuTensor<D>, &GpuTensor<D>, &GpuTensor<D>),
        d: Dims,
        scale: f32,
        (dq, dk, dv): (&GpuTensor<D>, &GpuTensor<D>, &GpuTensor<D>),
    ) -> BResult<()> {
        let s = self.alloc(&[d.b * d.nh, d.l, d.l])?;
        let ds = self.alloc(&[d.b * d.nh, d.l, d.l])?;
        self.scores(q, k, d, &s)?;
        let (row, head, sc) = (d.row(), d.head(), d.scores());
        // dP = dO·Vᵀ, then P and dS in place.
        self.matmul_batched((d.l, d.l, d.dh), (&d_o.buf, row, 1), (&v.buf, 1, row), &ds.buf, &d.batch(head, head, sc, d.l))?;
        let n = d.b * d.nh * d.l * d.l;
        self.ctx.run("attn_pds", &[u(n), u(d.l), f(scale)], &[&s.buf, &ds.buf, &lse.buf, &dd.buf], Grid::Threads(n as u64))?;
        let to_head = d.batch(sc, head, head, row);
        self.matmul_batched((d.l, d.dh, d.l), (&ds.buf, d.l, 1), (&k.buf, row, 1), &dq.buf, &to_head)?;
        self.matmul_batched((d.l, d.dh, d.l), (&ds.buf, 1, d.l), (&q.buf, row, 1), &dk.buf, &to_head)?;
        self.matmul_batched((d.l, d.dh, d.l), (&s.buf, 1, d.l), (&d_o.buf, row, 1), &dv.buf, &to_head)
    }
}
