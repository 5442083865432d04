// The LayerScale / post-norm merge z = RMSNorm(x + λ⊙u) (eps, no gain) over rows of length d
// (a row kernel, see kernels/src/lib.rs). has_lambda = 0 → λ = ones (post-norm).
// rstd[r] = 1/sqrt(mean(s²) + eps).
struct P { rows: u32, d: u32, eps: f32, has_lambda: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read> lambda: array<f32>;
@group(0) @binding(4) var<storage, read_write> z: array<f32>;
@group(0) @binding(5) var<storage, read_write> rstd: array<f32>;

fn s(base: u32, i: u32) -> f32 {
    if (prm.has_lambda != 0u) { return x[base + i] + lambda[i] * u[base + i]; }
    return x[base + i] + u[base + i];
}

fn row(r: u32, lane: u32, lanes: u32) {
    let base = r * prm.d;
    var ss = 0.0;
    for (var i = lane; i < prm.d; i = i + lanes) { let v = s(base, i); ss = ss + v * v; }
    let inv = 1.0 / sqrt(row_sum(ss) / f32(prm.d) + prm.eps);
    if (lane == 0u) { rstd[r] = inv; }
    // s is recomputed rather than stored: two cheap reads beat a [rows, d] scratch tensor.
    for (var i = lane; i < prm.d; i = i + lanes) { z[base + i] = s(base, i) * inv; }
}
