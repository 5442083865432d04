"""Independent PyTorch reference of the FLUX.2 autoencoder used by the released pipeline.

Forward only. Parameter names follow the released checkpoint (`encoder.down.{i}.block.{j}.norm1.*`,
`encoder.quant_conv.*`, `decoder.post_quant_conv.*`, `bn.running_mean`, ...), so
`AE(cfg).load_state_dict(safetensors_dict)` works with strict=True.

cfg: dict with ch, ch_mult (list), num_res_blocks, z_channels (in/out channels are 3).
  encode(x [B,3,H,W]) -> [B, 4z, H/f, W/f], f = 2^(len(ch_mult)-1) * 2:
    encoder moments -> first z channels (the posterior mean) -> 2x2 pixel-unshuffle
    (channel index c*4 + pi*2 + pj) -> (z - running_mean) / sqrt(running_var + 1e-4)
  decode(z) -> inverse normalisation -> 2x2 pixel-shuffle -> decoder [B,3,H,W] (unclamped)
Everything runs in the parameters' dtype (use .double() for the float64 reference).
"""
import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-4


def gn(c):
    return nn.GroupNorm(32, c, eps=1e-6)


def conv(cin, cout, k=3, stride=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=(k // 2 if stride == 1 else 0))


class ResnetBlock(nn.Module):
    """norm1 -> silu -> conv1 -> norm2 -> silu -> conv2, plus x (through 1x1 nin_shortcut if cin != cout)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = gn(cin), conv(cin, cout)
        self.norm2, self.conv2 = gn(cout), conv(cout, cout)
        if cin != cout:
            self.nin_shortcut = conv(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, scale 1/sqrt(C), residual."""

    def __init__(self, c):
        super().__init__()
        self.norm = gn(c)
        self.q, self.k, self.v, self.proj_out = (conv(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (m(n).flatten(2).transpose(1, 2)[:, None] for m in (self.q, self.k, self.v))  # [B, 1, HW, C]
        o = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        return x + self.proj_out(o[:, 0].transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Zero pad right and bottom by one, then 3x3 stride-2 conv without padding."""

    def __init__(self, c):
        super().__init__()
        self.conv = conv(c, c, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then 3x3 conv."""

    def __init__(self, c):
        super().__init__()
        self.conv = conv(c, c)

    def forward(self, x):
        return self.conv(x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))


def mid(c):
    m = nn.Module()
    m.block_1, m.attn_1, m.block_2 = ResnetBlock(c, c), AttnBlock(c), ResnetBlock(c, c)
    return m


def run_mid(m, h):
    return m.block_2(m.attn_1(m.block_1(h)))


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels):
        super().__init__()
        self.conv_in = conv(3, ch)
        self.down = nn.ModuleList()
        c = ch
        for i, m in enumerate(ch_mult):
            lvl = nn.Module()
            lvl.block = nn.ModuleList()
            for _ in range(num_res_blocks):
                lvl.block.append(ResnetBlock(c, ch * m))
                c = ch * m
            if i < len(ch_mult) - 1:
                lvl.downsample = Downsample(c)
            self.down.append(lvl)
        self.mid = mid(c)
        self.norm_out = gn(c)
        self.conv_out = conv(c, 2 * z_channels)
        self.quant_conv = conv(2 * z_channels, 2 * z_channels, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for lvl in self.down:
            for blk in lvl.block:
                h = blk(h)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample(h)
        h = run_mid(self.mid, h)
        return self.quant_conv(self.conv_out(F.silu(self.norm_out(h))))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels):
        super().__init__()
        self.post_quant_conv = conv(z_channels, z_channels, 1)
        c = ch * ch_mult[-1]
        self.conv_in = conv(z_channels, c)
        self.mid = mid(c)
        levels = []
        for i in reversed(range(len(ch_mult))):  # built from the lowest resolution up
            lvl = nn.Module()
            lvl.block = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                lvl.block.append(ResnetBlock(c, ch * ch_mult[i]))
                c = ch * ch_mult[i]
            if i > 0:
                lvl.upsample = Upsample(c)
            levels.insert(0, lvl)
        self.up = nn.ModuleList(levels)  # up[i] works at the resolution of encoder level i
        self.norm_out = gn(c)
        self.conv_out = conv(c, 3)

    def forward(self, z):
        h = run_mid(self.mid, self.conv_in(self.post_quant_conv(z)))
        for lvl in reversed(self.up):
            for blk in lvl.block:
                h = blk(h)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        args = (cfg["ch"], list(cfg["ch_mult"]), cfg["num_res_blocks"], cfg["z_channels"])
        self.z = cfg["z_channels"]
        self.encoder = Encoder(*args)
        self.decoder = Decoder(*args)
        self.bn = nn.BatchNorm2d(4 * self.z, eps=BN_EPS, affine=False)
        self.bn.eval()

    def factor(self):
        return 2 ** (len(self.encoder.down) - 1) * 2

    def _stats(self, like):
        m = self.bn.running_mean.to(like.dtype).view(1, -1, 1, 1)
        s = (self.bn.running_var.to(like.dtype) + BN_EPS).sqrt().view(1, -1, 1, 1)
        return m, s

    def encode(self, x):
        mean = self.encoder(x)[:, : self.z]
        b, c, h, w = mean.shape
        z = mean.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        m, s = self._stats(z)
        return (z - m) / s

    def decode(self, z):
        m, s = self._stats(z)
        z = z * s + m
        b, c4, h, w = z.shape
        z = z.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c4 // 4, 2 * h, 2 * w)
        return self.decoder(z)


def randomize(ae, gen, gain=1.0):
    """Random weights that keep activations O(1): convs ~ N(0, gain^2 / fan_in), biases ~ N(0, 0.05^2),
    GroupNorm weights ~ 1 + N(0, 0.1^2), biases ~ N(0, 0.1^2); bn.running_mean ~ N(0, 0.5^2),
    running_var ~ U(0.25, 2)."""
    with torch.no_grad():
        for name, p in ae.named_parameters():
            mod = ae.get_submodule(name.rsplit(".", 1)[0])
            if isinstance(mod, nn.GroupNorm):
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif name.endswith("weight"):
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * gain / fan_in ** 0.5)
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
        c = ae.bn.running_mean.shape[0]
        ae.bn.running_mean.copy_(0.5 * torch.randn(c, generator=gen, dtype=torch.float64))
        ae.bn.running_var.copy_(0.25 + 1.75 * torch.rand(c, generator=gen, dtype=torch.float64))
        ae.bn.num_batches_tracked.fill_(0)
    return ae


def config_from_state_dict(sd):
    """Recover (ch, ch_mult, num_res_blocks, z_channels) from a checkpoint's tensor names and shapes."""
    ch = sd["encoder.conv_in.weight"].shape[0]
    levels = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.down."))
    blocks = 1 + max(int(k.split(".")[4]) for k in sd if k.startswith("encoder.down.0.block."))
    mult = [sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in range(levels)]
    return dict(ch=ch, ch_mult=mult, num_res_blocks=blocks, z_channels=sd["bn.running_mean"].shape[0] // 4)
