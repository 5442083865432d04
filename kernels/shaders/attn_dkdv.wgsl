// Attention backward, dK and dV: one invocation per (b, h, key j); P rebuilt from lse.
// dV_j = Σ_i P_ij dO_i, dK_j = Σ_i dS_ij Q_i (accumulated in place in dk, dv).
#include attn_qkv
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> dd: array<f32>;
@group(0) @binding(6) var<storage, read> d_o: array<f32>;
@group(0) @binding(7) var<storage, read_write> dk: array<f32>;
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;

#include attn_head

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = flat_id(wid, nwg, lid);
    if (r >= prm.rows) { return; }
    let j = r % prm.l;
    let bh = r / prm.l;
    let stride = token_stride();
    let head0 = head_offset(bh);
    let kb = head0 + j * stride;
    for (var e = 0u; e < prm.dh; e = e + 1u) { dk[kb + e] = 0.0; dv[kb + e] = 0.0; }
    let row0 = bh * prm.l;
    for (var i = 0u; i < prm.l; i = i + 1u) {
        let qb = head0 + i * stride;
        var s = 0.0;
        var dp = 0.0;
        for (var e = 0u; e < prm.dh; e = e + 1u) {
            s = s + q[qb + e] * k[kb + e];
            dp = dp + d_o[qb + e] * v[kb + e];
        }
        let p = exp(s * prm.scale - lse[row0 + i]);
        let ds = p * (dp - dd[row0 + i]) * prm.scale;
        for (var e = 0u; e < prm.dh; e = e + 1u) {
            dv[kb + e] = dv[kb + e] + p * d_o[qb + e];
            dk[kb + e] = dk[kb + e] + ds * q[qb + e];
        }
    }
}
