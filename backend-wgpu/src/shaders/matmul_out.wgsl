// The last pass of the padded f16 matmul: C[m, n] = Cp[i, j] / (scales[0]·scales[1]) (+ bias[j]),
// Cp: [m_p, n_p] the product of the padded, scaled f16 operands. flags: 1 = bias.
struct P { m: u32, n: u32, np: u32, flags: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> cp: array<f32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.m * prm.n) { return; }
    let r = i / prm.n;
    let j = i % prm.n;
    var v = cp[r * prm.np + j] / (scales[0] * scales[1]);
    if ((prm.flags & 1u) != 0u) { v = v + bias[j]; }
    c[i] = v;
}
