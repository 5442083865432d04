//! The FLUX.2 autoencoder (forward only) over any backend: images [B, 3, H, W] in [-1, 1] ↔
//! the DiT's latents [B, 4z, H/f, W/f] (posterior mean, pixel-unshuffled 2×2, normalised by the
//! file's frozen BatchNorm statistics). Inside, images are channels last ([B, H, W, C]); the
//! layout changes on the host at the two ends.
//!
//! Letters: ch base channels, ch_mult per level, z latent channels, f = 2^(levels−1)·2 the
//! total downsampling factor. The architecture is read from the tensor shapes, so any file of
//! the official layout (`encoder.down.{i}.block.{j}.norm1.weight`, …, `bn.running_var`) loads.

use crate::error::{Error, Result};
use crate::weights::WeightFile;
use mvdit_core::ops::{conv::weight_to_channels_last, Conv2d, Heads, GROUP_NORM_EPS};
use mvdit_core::Backend;

/// GroupNorm groups of every norm in the autoencoder.
pub const GROUPS: usize = 32;
/// The BatchNorm epsilon of the latent normalisation.
pub const BN_EPS: f64 = 1e-4;

/// The architecture, as read from a file's tensor shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoencoderConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    pub z_channels: usize,
}

impl AutoencoderConfig {
    /// Image side divisor: 2 per downsampling level and 2 for the pixel unshuffle.
    pub fn factor(&self) -> usize {
        1 << self.ch_mult.len()
    }
    /// Channels of the DiT's latent: 4z.
    pub fn latent_channels(&self) -> usize {
        4 * self.z_channels
    }

    /// Reads the architecture from the shapes of `w`'s tensors.
    pub fn infer(w: &WeightFile) -> Result<Self> {
        let dim = |name: &str, i: usize| -> Result<usize> {
            let s = w.shape(name)?;
            s.get(i).copied().ok_or_else(|| Error::new(format!("{}: tensor `{name}` has shape {s:?}", w.origin())))
        };
        let levels = (0..).take_while(|i| w.contains(&format!("encoder.down.{i}.block.0.conv1.weight"))).count();
        let num_res_blocks = (0..).take_while(|j| w.contains(&format!("encoder.down.0.block.{j}.conv1.weight"))).count();
        if levels == 0 || num_res_blocks == 0 {
            return Err(Error::new(format!("{}: missing tensor `encoder.down.0.block.0.conv1.weight` (not a FLUX autoencoder file)", w.origin())));
        }
        let ch = dim("encoder.conv_in.weight", 0)?;
        let ch_mult = (0..levels)
            .map(|i| {
                let c = dim(&format!("encoder.down.{i}.block.0.conv1.weight"), 0)?;
                if c % ch != 0 {
                    return Err(Error::new(format!("{}: `encoder.down.{i}.block.0.conv1.weight` has {c} channels, not a multiple of {ch}", w.origin())));
                }
                Ok(c / ch)
            })
            .collect::<Result<Vec<_>>>()?;
        let cfg = AutoencoderConfig {
            in_channels: dim("encoder.conv_in.weight", 1)?,
            out_channels: dim("decoder.conv_out.weight", 0)?,
            ch,
            ch_mult,
            num_res_blocks,
            z_channels: dim("encoder.conv_out.weight", 0)? / 2,
        };
        if let Some(c) = cfg.ch_mult.iter().map(|m| m * ch).find(|c| c % GROUPS != 0) {
            return Err(Error::new(format!("{}: {c} channels cannot form {GROUPS} norm groups", w.origin())));
        }
        Ok(cfg)
    }
}

struct Conv<T> {
    w: T,
    b: T,
    geom: Conv2d,
}

struct Norm<T> {
    gamma: T,
    beta: T,
}

struct Resnet<T> {
    norm1: Norm<T>,
    conv1: Conv<T>,
    norm2: Norm<T>,
    conv2: Conv<T>,
    shortcut: Option<Conv<T>>,
}

struct Attn<T> {
    norm: Norm<T>,
    /// q, k, v, proj_out as linear layers over pixels: ([C, C], [C]).
    q: (T, T),
    k: (T, T),
    v: (T, T),
    proj: (T, T),
}

struct Mid<T> {
    block_1: Resnet<T>,
    attn_1: Attn<T>,
    block_2: Resnet<T>,
}

struct Level<T> {
    blocks: Vec<Resnet<T>>,
    /// Downsample (encoder) or the convolution after the nearest ×2 (decoder).
    resample: Option<Conv<T>>,
}

/// Uploads tensors from a weight file, converting PyTorch layouts to the backend's.
struct Loader<'a, B: Backend> {
    be: &'a B,
    w: &'a WeightFile,
}

impl<B: Backend> Loader<'_, B> {
    fn vec(&self, name: &str, n: usize) -> Result<B::Tensor> {
        let t = self.w.get(name, &[Some(n)])?;
        Ok(self.be.upload(&t.data, &[n])?)
    }

    /// `{prefix}.weight` [Co, Ci, K, K] and `{prefix}.bias` [Co]; only the first `keep` output
    /// channels when given.
    fn conv(&self, prefix: &str, ci: usize, co: usize, k: usize, geom: Conv2d, keep: Option<usize>) -> Result<Conv<B::Tensor>> {
        let w = self.w.get(&format!("{prefix}.weight"), &[Some(co), Some(ci), Some(k), Some(k)])?;
        let b = self.w.get(&format!("{prefix}.bias"), &[Some(co)])?;
        let kept = keep.unwrap_or(co);
        let wl = weight_to_channels_last(&w.data[..kept * ci * k * k], kept, ci, k, k);
        Ok(Conv { w: self.be.upload(&wl, &[kept, k, k, ci])?, b: self.be.upload(&b.data[..kept], &[kept])?, geom })
    }

    fn linear(&self, prefix: &str, c: usize) -> Result<(B::Tensor, B::Tensor)> {
        let w = self.w.get(&format!("{prefix}.weight"), &[Some(c), Some(c), Some(1), Some(1)])?;
        Ok((self.be.upload(&w.data, &[c, c])?, self.vec(&format!("{prefix}.bias"), c)?))
    }

    fn norm(&self, prefix: &str, c: usize) -> Result<Norm<B::Tensor>> {
        Ok(Norm { gamma: self.vec(&format!("{prefix}.weight"), c)?, beta: self.vec(&format!("{prefix}.bias"), c)? })
    }

    fn resnet(&self, prefix: &str, ci: usize, co: usize) -> Result<Resnet<B::Tensor>> {
        let shortcut_name = format!("{prefix}.nin_shortcut");
        Ok(Resnet {
            norm1: self.norm(&format!("{prefix}.norm1"), ci)?,
            conv1: self.conv(&format!("{prefix}.conv1"), ci, co, 3, Conv2d::same(1), None)?,
            norm2: self.norm(&format!("{prefix}.norm2"), co)?,
            conv2: self.conv(&format!("{prefix}.conv2"), co, co, 3, Conv2d::same(1), None)?,
            shortcut: if ci != co { Some(self.conv(&shortcut_name, ci, co, 1, Conv2d::same(0), None)?) } else { None },
        })
    }

    fn mid(&self, prefix: &str, c: usize) -> Result<Mid<B::Tensor>> {
        let a = format!("{prefix}.attn_1");
        Ok(Mid {
            block_1: self.resnet(&format!("{prefix}.block_1"), c, c)?,
            attn_1: Attn {
                norm: self.norm(&format!("{a}.norm"), c)?,
                q: self.linear(&format!("{a}.q"), c)?,
                k: self.linear(&format!("{a}.k"), c)?,
                v: self.linear(&format!("{a}.v"), c)?,
                proj: self.linear(&format!("{a}.proj_out"), c)?,
            },
            block_2: self.resnet(&format!("{prefix}.block_2"), c, c)?,
        })
    }
}

/// The autoencoder's weights on a backend.
pub struct Autoencoder<B: Backend> {
    pub cfg: AutoencoderConfig,
    enc_in: Conv<B::Tensor>,
    enc_levels: Vec<Level<B::Tensor>>,
    enc_mid: Mid<B::Tensor>,
    enc_norm: Norm<B::Tensor>,
    enc_out: Conv<B::Tensor>,
    /// `encoder.quant_conv` cut to its first z outputs: the posterior mean.
    quant: Conv<B::Tensor>,
    post_quant: Conv<B::Tensor>,
    dec_in: Conv<B::Tensor>,
    dec_mid: Mid<B::Tensor>,
    /// Index i = level i (decoding runs them from the last to the first).
    dec_levels: Vec<Level<B::Tensor>>,
    dec_norm: Norm<B::Tensor>,
    dec_out: Conv<B::Tensor>,
    /// BatchNorm running statistics over the 4z latent channels.
    bn_mean: Vec<f32>,
    bn_var: Vec<f32>,
}

/// [B, C, H, W] → [B, H, W, C] on the host.
pub fn nchw_to_nhwc(x: &[f32], [b, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    for bi in 0..b {
        for ch in 0..c {
            for p in 0..h * w {
                y[(bi * h * w + p) * c + ch] = x[(bi * c + ch) * h * w + p];
            }
        }
    }
    y
}

/// [B, H, W, C] → [B, C, H, W] on the host; `dims` are the NCHW dimensions.
pub fn nhwc_to_nchw(x: &[f32], [b, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    for bi in 0..b {
        for p in 0..h * w {
            for ch in 0..c {
                y[(bi * c + ch) * h * w + p] = x[(bi * h * w + p) * c + ch];
            }
        }
    }
    y
}

fn conv<B: Backend>(be: &B, c: &Conv<B::Tensor>, x: &B::Tensor) -> Result<B::Tensor> {
    Ok(be.conv2d(x, &c.w, Some(&c.b), c.geom)?)
}

/// GroupNorm then SiLU.
fn norm_silu<B: Backend>(be: &B, n: &Norm<B::Tensor>, x: &B::Tensor) -> Result<B::Tensor> {
    Ok(be.silu(&be.group_norm(x, &n.gamma, &n.beta, GROUPS, GROUP_NORM_EPS)?)?)
}

/// x: [B, H, W, Ci] → x (or its 1×1 shortcut) + conv2(silu(gn2(conv1(silu(gn1(x)))))): [B, H, W, Co].
fn resnet<B: Backend>(be: &B, r: &Resnet<B::Tensor>, x: &B::Tensor) -> Result<B::Tensor> {
    let h = conv(be, &r.conv1, &norm_silu(be, &r.norm1, x)?)?;
    let h = conv(be, &r.conv2, &norm_silu(be, &r.norm2, &h)?)?;
    Ok(match &r.shortcut {
        Some(s) => be.axpby(1.0, &conv(be, s, x)?, 1.0, &h)?,
        None => be.axpby(1.0, x, 1.0, &h)?,
    })
}

/// x: [B, H, W, C] → x + proj_out(attention over the H·W pixels of one head of width C).
fn attn<B: Backend>(be: &B, a: &Attn<B::Tensor>, x: &B::Tensor) -> Result<B::Tensor> {
    let shape = be.shape(x).to_vec();
    let (c, pixels) = (shape[3], shape[1] * shape[2]);
    let h = be.group_norm(x, &a.norm.gamma, &a.norm.beta, GROUPS, GROUP_NORM_EPS)?;
    let h = be.reshape(h, &[shape[0], pixels, c])?;
    let qkv = be.linear_multi(&h, &[&a.q.0, &a.k.0, &a.v.0], &[Some(&a.q.1), Some(&a.k.1), Some(&a.v.1)])?;
    let o = be.attention_masked(&qkv[0], &qkv[1], &qkv[2], Heads { q: 1, kv: 1 }, false, None)?;
    let p = be.reshape(be.linear(&o, &a.proj.0, Some(&a.proj.1))?, &shape)?;
    Ok(be.axpby(1.0, x, 1.0, &p)?)
}

fn mid<B: Backend>(be: &B, m: &Mid<B::Tensor>, x: &B::Tensor) -> Result<B::Tensor> {
    let h = resnet(be, &m.block_1, x)?;
    let h = attn(be, &m.attn_1, &h)?;
    resnet(be, &m.block_2, &h)
}

impl<B: Backend> Autoencoder<B> {
    /// Uploads the weights of `w` (architecture from its shapes) to `be`.
    pub fn load(be: &B, w: &WeightFile) -> Result<Self> {
        let cfg = AutoencoderConfig::infer(w)?;
        let ld = Loader { be, w };
        let (ch, z, nrb) = (cfg.ch, cfg.z_channels, cfg.num_res_blocks);
        let levels = cfg.ch_mult.len();
        let top = ch * cfg.ch_mult[levels - 1];
        let enc_in = ld.conv("encoder.conv_in", cfg.in_channels, ch, 3, Conv2d::same(1), None)?;
        let mut enc_levels = Vec::with_capacity(levels);
        let mut block_in = ch;
        for (i, m) in cfg.ch_mult.iter().enumerate() {
            let mut blocks = Vec::with_capacity(nrb);
            for j in 0..nrb {
                blocks.push(ld.resnet(&format!("encoder.down.{i}.block.{j}"), block_in, ch * m)?);
                block_in = ch * m;
            }
            let down = Conv2d { stride: 2, pad: [0, 1, 0, 1] };
            let resample = (i + 1 < levels).then(|| ld.conv(&format!("encoder.down.{i}.downsample.conv"), block_in, block_in, 3, down, None)).transpose()?;
            enc_levels.push(Level { blocks, resample });
        }
        let enc_mid = ld.mid("encoder.mid", top)?;
        let enc_norm = ld.norm("encoder.norm_out", top)?;
        let enc_out = ld.conv("encoder.conv_out", top, 2 * z, 3, Conv2d::same(1), None)?;
        let quant = ld.conv("encoder.quant_conv", 2 * z, 2 * z, 1, Conv2d::same(0), Some(z))?;
        let post_quant = ld.conv("decoder.post_quant_conv", z, z, 1, Conv2d::same(0), None)?;
        let dec_in = ld.conv("decoder.conv_in", z, top, 3, Conv2d::same(1), None)?;
        let dec_mid = ld.mid("decoder.mid", top)?;
        let mut dec_levels = Vec::with_capacity(levels);
        let mut block_in = top;
        for i in (0..levels).rev() {
            let out = ch * cfg.ch_mult[i];
            let mut blocks = Vec::with_capacity(nrb + 1);
            for j in 0..=nrb {
                blocks.push(ld.resnet(&format!("decoder.up.{i}.block.{j}"), block_in, out)?);
                block_in = out;
            }
            let resample = (i > 0).then(|| ld.conv(&format!("decoder.up.{i}.upsample.conv"), block_in, block_in, 3, Conv2d::same(1), None)).transpose()?;
            dec_levels.push(Level { blocks, resample });
        }
        dec_levels.reverse();
        let dec_norm = ld.norm("decoder.norm_out", ch * cfg.ch_mult[0])?;
        let dec_out = ld.conv("decoder.conv_out", ch * cfg.ch_mult[0], cfg.out_channels, 3, Conv2d::same(1), None)?;
        let lc = cfg.latent_channels();
        let bn_mean = w.get("bn.running_mean", &[Some(lc)])?.data;
        let bn_var = w.get("bn.running_var", &[Some(lc)])?.data;
        if let Some(i) = bn_var.iter().position(|&v| v < 0.0) {
            return Err(Error::new(format!("{}: tensor `bn.running_var` is negative at channel {i}", w.origin())));
        }
        Ok(Autoencoder { cfg, enc_in, enc_levels, enc_mid, enc_norm, enc_out, quant, post_quant, dec_in, dec_mid, dec_levels, dec_norm, dec_out, bn_mean, bn_var })
    }

    /// image: [B, C, H, W] (C = the file's input channels, values in [-1, 1]) → latent
    /// [B, 4z, H/f, W/f], normalised.
    pub fn encode(&self, be: &B, image: &[f32], [b, c, h, w]: [usize; 4]) -> Result<Vec<f32>> {
        let f = self.cfg.factor();
        if c != self.cfg.in_channels {
            return Err(Error::new(format!("image has {c} channels, the autoencoder takes {}", self.cfg.in_channels)));
        }
        if h % f != 0 || w % f != 0 || h == 0 || w == 0 {
            return Err(Error::new(format!("image size {h}x{w} is not a multiple of the autoencoder's factor {f}")));
        }
        if image.len() != b * c * h * w {
            return Err(Error::new(format!("image has {} values for shape [{b}, {c}, {h}, {w}]", image.len())));
        }
        let x = be.upload(&nchw_to_nhwc(image, [b, c, h, w]), &[b, h, w, c])?;
        let mut x = conv(be, &self.enc_in, &x)?;
        for level in &self.enc_levels {
            for r in &level.blocks {
                x = resnet(be, r, &x)?;
            }
            if let Some(d) = &level.resample {
                x = conv(be, d, &x)?;
            }
        }
        let x = mid(be, &self.enc_mid, &x)?;
        let x = conv(be, &self.enc_out, &norm_silu(be, &self.enc_norm, &x)?)?;
        let mean = conv(be, &self.quant, &x)?;
        let packed = be.download(&be.pixel_unshuffle(&mean, 2)?)?;
        let lc = self.cfg.latent_channels();
        let mut z = packed;
        for (i, v) in z.iter_mut().enumerate() {
            let ch = i % lc;
            *v = ((*v as f64 - self.bn_mean[ch] as f64) / (self.bn_var[ch] as f64 + BN_EPS).sqrt()) as f32;
        }
        Ok(nhwc_to_nchw(&z, [b, lc, h / f, w / f]))
    }

    /// latent: [B, 4z, h, w] (normalised) → image [B, C_out, h·f, w·f], not clamped.
    pub fn decode(&self, be: &B, latent: &[f32], [b, c, h, w]: [usize; 4]) -> Result<Vec<f32>> {
        let lc = self.cfg.latent_channels();
        if c != lc {
            return Err(Error::new(format!("latent has {c} channels, the autoencoder's have {lc}")));
        }
        if latent.len() != b * c * h * w || h == 0 || w == 0 {
            return Err(Error::new(format!("latent has {} values for shape [{b}, {c}, {h}, {w}]", latent.len())));
        }
        let mut z = nchw_to_nhwc(latent, [b, c, h, w]);
        for (i, v) in z.iter_mut().enumerate() {
            let ch = i % lc;
            *v = (*v as f64 * (self.bn_var[ch] as f64 + BN_EPS).sqrt() + self.bn_mean[ch] as f64) as f32;
        }
        let z = be.pixel_shuffle(&be.upload(&z, &[b, h, w, lc])?, 2)?;
        let z = conv(be, &self.post_quant, &z)?;
        let mut x = mid(be, &self.dec_mid, &conv(be, &self.dec_in, &z)?)?;
        for level in self.dec_levels.iter().rev() {
            for r in &level.blocks {
                x = resnet(be, r, &x)?;
            }
            if let Some(u) = &level.resample {
                x = conv(be, u, &be.upsample_nearest(&x, 2)?)?;
            }
        }
        let x = conv(be, &self.dec_out, &norm_silu(be, &self.dec_norm, &x)?)?;
        let f = self.cfg.factor();
        Ok(nhwc_to_nchw(&be.download(&x)?, [b, self.cfg.out_channels, h * f, w * f]))
    }
}
