// Attention backward, dK and dV, for GPUs: one workgroup per (tile of 64 keys, b·h), one thread
// per key; Q/dO tiles of 16 queries staged in workgroup memory; k, v and the dK/dV accumulators in
// private arrays (Dh ≤ 128). P rebuilt from lse: dV_j = Σ_i P_ij dO_i, dK_j = Σ_i dS_ij Q_i.
#include attn_qkv
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> dd: array<f32>;
@group(0) @binding(6) var<storage, read> d_o: array<f32>;
@group(0) @binding(7) var<storage, read_write> dk: array<f32>;
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;

#include attn_head

const TQ: u32 = 16u;
var<workgroup> qs: array<f32, 2048>;
var<workgroup> dos: array<f32, 2048>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let l = prm.l;
    let dh = prm.dh;
    let bh = wid.y;
    let stride = token_stride();
    let head0 = head_offset(bh);
    let j = wid.x * 64u + lid;
    let valid = j < l;
    let kb = head0 + min(j, l - 1u) * stride;
    var kr: array<f32, 128>;
    var vr: array<f32, 128>;
    var dka: array<f32, 128>;
    var dva: array<f32, 128>;
    for (var e = 0u; e < dh; e = e + 1u) { kr[e] = k[kb + e] * prm.scale; vr[e] = v[kb + e]; dka[e] = 0.0; dva[e] = 0.0; }
    let row0 = bh * l;
    var pw: array<f32, 16>;
    var dsw: array<f32, 16>;
    for (var i0 = 0u; i0 < l; i0 = i0 + TQ) {
        let nq = min(TQ, l - i0);
        workgroupBarrier();
        for (var t = lid; t < nq * dh; t = t + 64u) {
            let ii = t / dh;
            let e = t % dh;
            let g = head0 + (i0 + ii) * stride + e;
            qs[t] = q[g];
            dos[t] = d_o[g];
        }
        workgroupBarrier();
        for (var ii = 0u; ii < nq; ii = ii + 1u) {
            var s = 0.0;
            var dp = 0.0;
            let qb = ii * dh;
            for (var e = 0u; e < dh; e = e + 1u) {
                s = s + qs[qb + e] * kr[e];
                dp = dp + dos[qb + e] * vr[e];
            }
            let p = exp(s - lse[row0 + i0 + ii]);
            pw[ii] = p;
            dsw[ii] = p * (dp - dd[row0 + i0 + ii]) * prm.scale;
        }
        for (var e = 0u; e < dh; e = e + 1u) {
            var a = dva[e];
            var c = dka[e];
            for (var ii = 0u; ii < nq; ii = ii + 1u) {
                a = a + pw[ii] * dos[ii * dh + e];
                c = c + dsw[ii] * qs[ii * dh + e];
            }
            dva[e] = a;
            dka[e] = c;
        }
    }
    if (valid) {
        for (var e = 0u; e < dh; e = e + 1u) { dk[kb + e] = dka[e]; dv[kb + e] = dva[e]; }
    }
}
