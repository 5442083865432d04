// Fused RoPE2D (tokens [0, li), rotate-half pairs (i, i + dh/2)) + per-head RMSNorm (no gain).
// A row kernel (see kernels/src/lib.rs) over (b, t, h) rows of dh values. mode 0: forward (y, rstd);
// mode 1: backward (dx from dy and the saved rstd; the rotation is inverted after the norm).
struct P { rows: u32, l: u32, nh: u32, dh: u32, li: u32, eps: f32, mode: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> cos_t: array<f32>;
@group(0) @binding(3) var<storage, read> sin_t: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;

// Rotated value of element i of the row at `base` (token t).
fn rot(base: u32, t: u32, i: u32) -> f32 {
    let half = prm.dh / 2u;
    if (t >= prm.li || i >= 2u * half) { return x[base + i]; }
    if (i < half) {
        let k = t * half + i;
        return x[base + i] * cos_t[k] + x[base + i + half] * sin_t[k];
    }
    let j = i - half;
    let k = t * half + j;
    return x[base + i] * cos_t[k] - x[base + j] * sin_t[k];
}

fn row(r: u32, lane: u32, lanes: u32) {
    let t = (r / prm.nh) % prm.l;
    let base = r * prm.dh;
    if (prm.mode == 0u) {
        var ss = 0.0;
        for (var i = lane; i < prm.dh; i = i + lanes) { let v = rot(base, t, i); ss = ss + v * v; }
        let inv = 1.0 / sqrt(row_sum(ss) / f32(prm.dh) + prm.eps);
        if (lane == 0u) { rstd[r] = inv; }
        for (var i = lane; i < prm.dh; i = i + lanes) { out[base + i] = rot(base, t, i) * inv; }
        return;
    }
    let inv = rstd[r];
    var dot = 0.0;
    for (var i = lane; i < prm.dh; i = i + lanes) { dot = dot + dy[base + i] * rot(base, t, i); }
    let k = inv * inv * inv * row_sum(dot) / f32(prm.dh);
    let half = prm.dh / 2u;
    for (var i = lane; i < prm.dh; i = i + lanes) {
        let dr = inv * dy[base + i] - k * rot(base, t, i);
        if (t >= prm.li || i >= 2u * half) {
            out[base + i] = dr;
        } else if (i < half) {
            let p = i + half;
            let drp = inv * dy[base + p] - k * rot(base, t, p);
            let q = t * half + i;
            out[base + i] = dr * cos_t[q] - drp * sin_t[q];
        } else {
            let p = i - half;
            let drp = inv * dy[base + p] - k * rot(base, t, p);
            let q = t * half + p;
            out[base + i] = dr * cos_t[q] + drp * sin_t[q];
        }
    }
}
