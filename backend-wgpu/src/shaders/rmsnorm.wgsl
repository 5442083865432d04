// RMSNorm over rows of length d, one invocation per row. has_gain = 0 → gain of ones.
struct P { rows: u32, d: u32, eps: f32, has_gain: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gain: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = flat_id(wid, nwg, lid);
    if (r >= prm.rows) { return; }
    let base = r * prm.d;
    var ss = 0.0;
    for (var i = 0u; i < prm.d; i = i + 1u) { let v = x[base + i]; ss = ss + v * v; }
    let inv = 1.0 / sqrt(ss / f32(prm.d) + prm.eps);
    rstd[r] = inv;
    for (var i = 0u; i < prm.d; i = i + 1u) {
        var g = 1.0;
        if (prm.has_gain != 0u) { g = gain[i]; }
        y[base + i] = x[base + i] * inv * g;
    }
}
