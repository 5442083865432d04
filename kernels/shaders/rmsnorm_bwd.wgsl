// dx = r·(g⊙dy) − r³·x·mean(g⊙dy⊙x) (a row kernel, see kernels/src/lib.rs).
struct P { rows: u32, d: u32, has_gain: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gain: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

fn g(i: u32) -> f32 {
    if (prm.has_gain != 0u) { return gain[i]; }
    return 1.0;
}

fn row(r: u32, lane: u32, lanes: u32) {
    let base = r * prm.d;
    let inv = rstd[r];
    var dot = 0.0;
    for (var i = lane; i < prm.d; i = i + lanes) { dot = dot + g(i) * dy[base + i] * x[base + i]; }
    let c = inv * inv * inv * row_sum(dot) / f32(prm.d);
    for (var i = lane; i < prm.d; i = i + lanes) {
        dx[base + i] = inv * g(i) * dy[base + i] - c * x[base + i];
    }
}
