// MV-Split backward, step 1: ds = d(pre-norm sum) from dz, recomputing s (a row kernel, see
// kernels/src/lib.rs).
struct P { rows: u32, l: u32, d: u32, s0end: u32, mu_off: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read> alpha: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read> means: array<f32>;
@group(0) @binding(6) var<storage, read> rstd: array<f32>;
@group(0) @binding(7) var<storage, read> dz: array<f32>;
@group(0) @binding(8) var<storage, read_write> ds: array<f32>;

#include mvsplit_merged

fn row(r: u32, lane: u32, lanes: u32) {
    let mb = segment_means(r);
    let base = r * prm.d;
    let inv = rstd[r];
    var dot = 0.0;
    for (var c = lane; c < prm.d; c = c + lanes) { dot = dot + dz[base + c] * merged(base, mb, c); }
    let k = inv * inv * inv * row_sum(dot) / f32(prm.d);
    for (var c = lane; c < prm.d; c = c + lanes) {
        ds[base + c] = inv * dz[base + c] - k * merged(base, mb, c);
    }
}
