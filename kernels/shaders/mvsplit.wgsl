// Fused MV-Split merge + RMSNorm (no gain) over token rows (a row kernel, see kernels/src/lib.rs).
// means = [M(x) as [B,2,D] | M(u) as [B,2,D]]; s = x + β(u − Mu) + α(Mu − Mx); z = s·rstd.
struct P { rows: u32, l: u32, d: u32, s0end: u32, eps: f32, mu_off: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read> alpha: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read> means: array<f32>;
@group(0) @binding(6) var<storage, read_write> z: array<f32>;
@group(0) @binding(7) var<storage, read_write> rstd: array<f32>;

#include mvsplit_merged

fn row(r: u32, lane: u32, lanes: u32) {
    let mb = segment_means(r);
    let base = r * prm.d;
    var ss = 0.0;
    for (var c = lane; c < prm.d; c = c + lanes) { let s = merged(base, mb, c); ss = ss + s * s; }
    let inv = 1.0 / sqrt(row_sum(ss) / f32(prm.d) + prm.eps);
    if (lane == 0u) { rstd[r] = inv; }
    for (var c = lane; c < prm.d; c = c + lanes) { z[base + c] = merged(base, mb, c) * inv; }
}
