// Attention backward, step 1: dd[b, h, i] = Σ_e dO[b, i, h, e] · O[b, i, h, e].
struct P { rows: u32, l: u32, nh: u32, dh: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> o: array<f32>;
@group(0) @binding(2) var<storage, read> d_o: array<f32>;
@group(0) @binding(3) var<storage, read_write> dd: array<f32>;

#include attn_head

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = flat_id(wid, nwg, lid);
    if (r >= prm.rows) { return; }
    let i = r % prm.l;
    let bh = r / prm.l;
    let base = head_offset(bh) + i * token_stride();
    var s = 0.0;
    for (var e = 0u; e < prm.dh; e = e + 1u) { s = s + d_o[base + e] * o[base + e]; }
    dd[r] = s;
}
