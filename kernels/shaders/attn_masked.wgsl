// Masked softmax of attention scores in place, one 64-invocation workgroup per row (the grid
// laid out as for `flat_id`, one workgroup per row). s: [B·Hkv, rz, L] raw scores Q·Kᵀ with
// rz = G·lq rows per (sample b, KV head): the G query heads sharing it, each over queries
// q0..q0+lq (row (g, i) of a block is query q0 + i). Key j is visible to query i when
// (!causal or j ≤ i) and (!masked or keys[b·L + j] ≠ 0) (keys: [B, L], 1 keep, 0 padding);
// s ← softmax over the visible keys of scale·s, 0 at the others (ops::attention_masked).
struct P { rows: u32, l: u32, rz: u32, lq: u32, q0: u32, hkv: u32, causal: u32, masked: u32, scale: f32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read_write> s: array<f32>;
@group(0) @binding(2) var<storage, read> keys: array<f32>;

var<workgroup> red: array<f32, 64>;

// max (is_max) or sum over the workgroup's 64 values; every invocation gets the result.
fn reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    red[lid] = v;
    for (var w = 32u; w > 0u; w = w / 2u) {
        workgroupBarrier();
        if (lid < w) {
            if (is_max) { red[lid] = max(red[lid], red[lid + w]); } else { red[lid] = red[lid] + red[lid + w]; }
        }
    }
    workgroupBarrier();
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn visible(b: u32, i: u32, j: u32) -> bool {
    return (prm.causal == 0u || j <= i) && (prm.masked == 0u || keys[b * prm.l + j] != 0.0);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= prm.rows) { return; }
    let z = row / prm.rz;
    let b = z / prm.hkv;
    let i = prm.q0 + row % prm.lq;
    let base = row * prm.l;
    var m = -3.0e38;
    for (var j = lid; j < prm.l; j = j + 64u) {
        if (visible(b, i, j)) { m = max(m, s[base + j] * prm.scale); }
    }
    m = reduce(m, lid, true);
    var sum = 0.0;
    for (var j = lid; j < prm.l; j = j + 64u) {
        var p = 0.0;
        if (visible(b, i, j)) { p = exp(s[base + j] * prm.scale - m); }
        s[base + j] = p;
        sum = sum + p;
    }
    sum = reduce(sum, lid, false);
    // A query that sees no key at all (sum = 0: every visible key adds at least exp(0) = 1)
    // keeps its row of zeros, so its output row is 0 (the rule of ops::attention_masked).
    if (sum == 0.0) { return; }
    let inv = 1.0 / sum;
    for (var j = lid; j < prm.l; j = j + 64u) { s[base + j] = s[base + j] * inv; }
}
