// RMSNorm over rows of length d (a row kernel, see kernels/src/lib.rs). has_gain = 0 → gain of ones.
struct P { rows: u32, d: u32, eps: f32, has_gain: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gain: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;

fn row(r: u32, lane: u32, lanes: u32) {
    let base = r * prm.d;
    var ss = 0.0;
    for (var i = lane; i < prm.d; i = i + lanes) { let v = x[base + i]; ss = ss + v * v; }
    let inv = 1.0 / sqrt(row_sum(ss) / f32(prm.d) + prm.eps);
    if (lane == 0u) { rstd[r] = inv; }
    for (var i = lane; i < prm.d; i = i + lanes) {
        var g = 1.0;
        if (prm.has_gain != 0u) { g = gain[i]; }
        y[base + i] = x[base + i] * inv * g;
    }
}
