// Attention backward, dQ, for GPUs: one workgroup per (tile of 64 queries, b·h), one thread per
// query; K/V tiles of 16 keys staged in workgroup memory; q, dO and the dQ accumulator in private
// arrays (Dh ≤ 128). P rebuilt from lse: dS_ij = P_ij (dO_i·V_j − D_i)·scale, dQ_i = Σ_j dS_ij K_j.
#include attn_qkv
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> dd: array<f32>;
@group(0) @binding(6) var<storage, read> d_o: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;

#include attn_head
#include attn_kv_tiles

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let l = prm.l;
    let dh = prm.dh;
    let bh = wid.y;
    let stride = token_stride();
    let head0 = head_offset(bh);
    let i = wid.x * 64u + lid;
    let valid = i < l;
    let ic = min(i, l - 1u);
    let qb = head0 + ic * stride;
    var qr: array<f32, 128>;
    var dor: array<f32, 128>;
    var acc: array<f32, 128>;
    for (var e = 0u; e < dh; e = e + 1u) { qr[e] = q[qb + e] * prm.scale; dor[e] = d_o[qb + e]; acc[e] = 0.0; }
    let li = lse[bh * l + ic];
    let di = dd[bh * l + ic];
    var ds: array<f32, 16>;
    for (var j0 = 0u; j0 < l; j0 = j0 + TK) {
        let nk = min(TK, l - j0);
        stage_kv(j0, nk, head0, lid);
        for (var jj = 0u; jj < nk; jj = jj + 1u) {
            var s = 0.0;
            var dp = 0.0;
            let kb = jj * dh;
            for (var e = 0u; e < dh; e = e + 1u) {
                s = s + qr[e] * ks[kb + e];
                dp = dp + dor[e] * vs[kb + e];
            }
            let p = exp(s - li);
            ds[jj] = p * (dp - di) * prm.scale;
        }
        for (var e = 0u; e < dh; e = e + 1u) {
            var a = acc[e];
            for (var jj = 0u; jj < nk; jj = jj + 1u) { a = a + ds[jj] * ks[jj * dh + e]; }
            acc[e] = a;
        }
    }
    if (valid) {
        for (var e = 0u; e < dh; e = e + 1u) { dq[qb + e] = acc[e]; }
    }
}
