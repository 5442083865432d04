// Attention forward for GPUs: one workgroup per (tile of 64 queries, b·h), one thread per query.
// K/V tiles of 16 keys are staged in workgroup memory (2 × 8 KiB at Dh = 128); the query row and
// the output accumulator live in private arrays, so Dh ≤ 128. Online softmax over key tiles, so
// the [L, L] matrix is never stored. q, k, v, o: [B, L, Nh, Dh]; lse: [B, Nh, L].
#include attn_qkv
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;

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
    let qb = head0 + min(i, l - 1u) * stride;
    var qr: array<f32, 128>;
    var acc: array<f32, 128>;
    for (var e = 0u; e < dh; e = e + 1u) { qr[e] = q[qb + e] * prm.scale; acc[e] = 0.0; }
    var m = -3.0e38;
    var sum = 0.0;
    var sc: array<f32, 16>;
    for (var j0 = 0u; j0 < l; j0 = j0 + TK) {
        let nk = min(TK, l - j0);
        stage_kv(j0, nk, head0, lid);
        var mt = m;
        for (var jj = 0u; jj < nk; jj = jj + 1u) {
            var s = 0.0;
            let kb = jj * dh;
            for (var e = 0u; e < dh; e = e + 1u) { s = s + qr[e] * ks[kb + e]; }
            sc[jj] = s;
            mt = max(mt, s);
        }
        let corr = exp(m - mt);
        sum = sum * corr;
        m = mt;
        for (var jj = 0u; jj < nk; jj = jj + 1u) {
            let w = exp(sc[jj] - m);
            sc[jj] = w;
            sum = sum + w;
        }
        for (var e = 0u; e < dh; e = e + 1u) {
            var a = acc[e] * corr;
            for (var jj = 0u; jj < nk; jj = jj + 1u) { a = a + sc[jj] * vs[jj * dh + e]; }
            acc[e] = a;
        }
    }
    if (valid) {
        lse[bh * l + i] = m + log(sum);
        let inv = 1.0 / sum;
        for (var e = 0u; e < dh; e = e + 1u) { o[qb + e] = acc[e] * inv; }
    }
}
