// Attention forward, one invocation per (b, h, query i): online softmax over the keys, so the
// [L, L] matrix is never stored. q, k, v, o: [B, L, Nh, Dh]; lse: [B, Nh, L].
// The output row (owned by this invocation) is the accumulator, so any head size works.
#include attn_qkv
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;

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
    for (var e = 0u; e < prm.dh; e = e + 1u) { o[qb + e] = 0.0; }
    var m = -3.0e38;
    var sum = 0.0;
    for (var j = 0u; j < prm.l; j = j + 1u) {
        let kb = head0 + j * stride;
        var s = 0.0;
        for (var e = 0u; e < prm.dh; e = e + 1u) { s = s + q[qb + e] * k[kb + e]; }
        s = s * prm.scale;
        if (s > m) {
            let corr = exp(m - s);
            sum = sum * corr;
            for (var e = 0u; e < prm.dh; e = e + 1u) { o[qb + e] = o[qb + e] * corr; }
            m = s;
        }
        let w = exp(s - m);
        sum = sum + w;
        for (var e = 0u; e < prm.dh; e = e + 1u) { o[qb + e] = o[qb + e] + w * v[kb + e]; }
    }
    lse[r] = m + log(sum);
    let inv = 1.0 / sum;
    for (var e = 0u; e < prm.dh; e = e + 1u) { o[qb + e] = o[qb + e] * inv; }
}
