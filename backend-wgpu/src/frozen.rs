//! Forward-only ops of the frozen networks. TEMPORARY host bodies (download, f32 reference,
//! upload) until the kernels land; shapes are checked here either way.

use super::*;
use mvdit_core::ops::{AttnMask, Conv2d, Heads};

fn dims4(shape: &[usize], op: &str) -> BResult<[usize; 4]> {
    match shape {
        [b, h, w, c] => Ok([*b, *h, *w, *c]),
        s => Err(BackendError::Shape(format!("{op}: image must be [B, H, W, C], got {s:?}"))),
    }
}

impl<D: GpuDevice> GpuBackend<D> {
    pub(crate) fn conv2d_host(&self, x: &GpuTensor<D>, w: &GpuTensor<D>, b: Option<&GpuTensor<D>>, conv: Conv2d) -> BResult<GpuTensor<D>> {
        let [bn, h, wd, ci] = dims4(&x.shape, "conv2d")?;
        let (co, kh, kw) = match w.shape.as_slice() {
            [co, kh, kw, c] if *c == ci => (*co, *kh, *kw),
            s => return Err(BackendError::Shape(format!("conv2d: weight {s:?} for {ci} input channels"))),
        };
        if let Some(b) = b {
            check(b.shape == [co], || format!("conv2d: bias {:?} for {co} output channels", b.shape))?;
        }
        let (ho, wo) = conv.out_size(h, wd, kh, kw).ok_or_else(|| BackendError::Shape(format!("conv2d: {kh}x{kw} kernel, {conv:?} on {h}x{wd}")))?;
        let bias = b.map(|b| self.download(b)).transpose()?;
        let mut y = vec![0.0f32; bn * ho * wo * co];
        ops::conv2d(&self.download(x)?, &self.download(w)?, bias.as_deref(), &mut y, [bn, h, wd, ci], [co, kh, kw], conv);
        self.upload(&y, &[bn, ho, wo, co])
    }

    pub(crate) fn group_norm_host(&self, x: &GpuTensor<D>, gamma: &GpuTensor<D>, beta: &GpuTensor<D>, groups: usize, eps: f64) -> BResult<GpuTensor<D>> {
        let c = x.last();
        check(x.shape.len() >= 2 && groups > 0 && c.is_multiple_of(groups), || format!("group_norm: x {:?} in {groups} groups", x.shape))?;
        check(gamma.shape == [c] && beta.shape == [c], || format!("group_norm: gamma {:?}, beta {:?} for {c} channels", gamma.shape, beta.shape))?;
        let n = x.len / x.shape[0].max(1) / c;
        let mut y = vec![0.0f32; x.len];
        ops::group_norm(&self.download(x)?, &self.download(gamma)?, &self.download(beta)?, &mut y, n, groups, eps);
        self.upload(&y, &x.shape)
    }

    pub(crate) fn silu_host(&self, x: &GpuTensor<D>) -> BResult<GpuTensor<D>> {
        let mut y = vec![0.0f32; x.len];
        ops::silu(&self.download(x)?, &mut y);
        self.upload(&y, &x.shape)
    }

    pub(crate) fn resample_host(&self, x: &GpuTensor<D>, r: usize, op: &str) -> BResult<GpuTensor<D>> {
        let [b, h, w, c] = dims4(&x.shape, op)?;
        let xv = self.download(x)?;
        let mut y = vec![0.0f32; x.len * if op == "upsample_nearest" { r * r } else { 1 }];
        let shape = match op {
            "upsample_nearest" => {
                check(r > 0, || "upsample_nearest: factor 0".into())?;
                ops::upsample_nearest(&xv, &mut y, [b, h, w, c], r);
                [b, h * r, w * r, c]
            }
            "pixel_unshuffle" => {
                check(r > 0 && h % r == 0 && w % r == 0, || format!("pixel_unshuffle: {h}x{w} not divisible by {r}"))?;
                ops::pixel_unshuffle(&xv, &mut y, [b, h, w, c], r);
                [b, h / r, w / r, c * r * r]
            }
            _ => {
                check(r > 0 && c.is_multiple_of(r * r), || format!("pixel_shuffle: {c} channels not divisible by {r}²"))?;
                ops::pixel_shuffle(&xv, &mut y, [b, h, w, c / (r * r)], r);
                [b, h * r, w * r, c / (r * r)]
            }
        };
        self.upload(&y, &shape)
    }

    pub(crate) fn attention_masked_host(&self, q: &GpuTensor<D>, k: &GpuTensor<D>, v: &GpuTensor<D>, heads: Heads, causal: bool, key_mask: Option<&GpuTensor<D>>) -> BResult<GpuTensor<D>> {
        let [b, l, dq] = match q.shape.as_slice() {
            [b, l, d] => [*b, *l, *d],
            s => return Err(BackendError::Shape(format!("attention_masked: q must be [B, L, D], got {s:?}"))),
        };
        check(heads.kv > 0 && heads.q.is_multiple_of(heads.kv) && dq.is_multiple_of(heads.q), || format!("attention_masked: {heads:?} for D={dq}"))?;
        let dh = dq / heads.q;
        check(k.shape == [b, l, heads.kv * dh] && v.shape == k.shape, || format!("attention_masked: q {:?}, k {:?}, v {:?}", q.shape, k.shape, v.shape))?;
        if let Some(m) = key_mask {
            check(m.shape == [b, l], || format!("attention_masked: key mask {:?} for [{b}, {l}]", m.shape))?;
        }
        let mask = key_mask.map(|m| self.download(m)).transpose()?;
        let mut o = vec![0.0f32; q.len];
        ops::attention_masked(&self.download(q)?, &self.download(k)?, &self.download(v)?, &mut o, AttnMask { causal, keys: mask.as_deref() }, b, l, heads, dh);
        self.upload(&o, &q.shape)
    }

    pub(crate) fn rope_host(&self, x: &GpuTensor<D>, cos: &GpuTensor<D>, sin: &GpuTensor<D>, nh: usize) -> BResult<GpuTensor<D>> {
        let [b, l, d] = match x.shape.as_slice() {
            [b, l, d] => [*b, *l, *d],
            s => return Err(BackendError::Shape(format!("rope: x must be [B, L, D], got {s:?}"))),
        };
        check(nh > 0 && d.is_multiple_of(nh) && (d / nh).is_multiple_of(2), || format!("rope: D={d}, {nh} heads"))?;
        let dh = d / nh;
        check(cos.len == l * dh / 2 && sin.len == cos.len, || format!("rope: tables {:?} for L={l}, Dh={dh}", cos.shape))?;
        let mut y = self.download(x)?;
        ops::rope_apply(&mut y, &self.download(cos)?, &self.download(sin)?, b, l, l, nh, dh, false);
        self.upload(&y, &x.shape)
    }
}
