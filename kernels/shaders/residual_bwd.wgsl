// Backward of residual.wgsl (a row kernel, see kernels/src/lib.rs): with s = x + λ⊙u,
// ds = r·dz − r³·s·mean(dz⊙s); dx = ds, du = λ⊙ds (ds when has_lambda = 0).
struct P { rows: u32, d: u32, has_lambda: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read> lambda: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read> dz: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> du: array<f32>;

fn lam(i: u32) -> f32 {
    if (prm.has_lambda != 0u) { return lambda[i]; }
    return 1.0;
}

fn row(r: u32, lane: u32, lanes: u32) {
    let base = r * prm.d;
    let inv = rstd[r];
    var dot = 0.0;
    for (var i = lane; i < prm.d; i = i + lanes) {
        let s = x[base + i] + lam(i) * u[base + i];
        dot = dot + dz[base + i] * s;
    }
    let c = inv * inv * inv * row_sum(dot) / f32(prm.d);
    for (var i = lane; i < prm.d; i = i + lanes) {
        let l = lam(i);
        let ds = inv * dz[base + i] - c * (x[base + i] + l * u[base + i]);
        dx[base + i] = ds;
        du[base + i] = l * ds;
    }
}
