// Attention backward, dQ: one invocation per (b, h, query i); P rebuilt from lse.
// dS_ij = P_ij (dO_i·V_j − D_i)·scale, dQ_i = Σ_j dS_ij K_j (accumulated in place in dq).
#include attn_qkv
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> dd: array<f32>;
@group(0) @binding(6) var<storage, read> d_o: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;

#include attn_head

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = flat_id(wid, nwg, lid);
    if (r >= prm.rows) { return; }
    let i = r % prm.l;
    let bh = r / prm.l;
    let stride = token_stride();
    let head0 = head_offset(bh);
    let qb = head0 + i * stride;
    for (var e = 0u; e < prm.dh; e = e + 1u) { dq[qb + e] = 0.0; }
    let li = lse[r];
    let di = dd[r];
    for (var j = 0u; j < prm.l; j = j + 1u) {
        let kb = head0 + j * stride;
        var s = 0.0;
        var dp = 0.0;
        for (var e = 0u; e < prm.dh; e = e + 1u) {
            s = s + q[qb + e] * k[kb + e];
            dp = dp + d_o[qb + e] * v[kb + e];
        }
        let p = exp(s * prm.scale - li);
        let ds = p * (dp - di) * prm.scale;
        for (var e = 0u; e < prm.dh; e = e + 1u) { dq[qb + e] = dq[qb + e] + ds * k[kb + e]; }
    }
}
