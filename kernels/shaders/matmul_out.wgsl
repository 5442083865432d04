// The last pass of the padded f16 matmul: C_z(i, j) = Cp[z, i, j] / (scales[0]·scales[1])
// (+ bias[j]) for i < m, j < n, Cp: [Z, m_p, n_p] the products of the padded, scaled f16
// operands. C_z(i, j) = c[o_z + i*c_rs + j], o_z = (z / nh)·c_sb + (z % nh)·c_sh (one matrix:
// Z = 1, offsets 0, c_rs = n). flags: 1 = bias.
// The parameters from m on are the output rule's (`store_c`), as in `matmul_coop_ws`.
struct P { mp: u32, np: u32, count: u32, m: u32, n: u32, flags: u32, nh: u32, c_sb: u32, c_sh: u32, c_rs: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> cp: array<f32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

#include matmul_store

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    let per = prm.m * prm.n;
    let z = i / per;
    if (z >= prm.count) { return; }
    let r = (i % per) / prm.n;
    let j = i % prm.n;
    store_c(z, r, j, cp[(z * prm.mp + r) * prm.np + j]);
}
