// Attention probabilities from raw scores, one invocation per row r = z·L + i of s: [BH, L, L]
// (z = b·Nh + h): s_r ← softmax(scale·s_r) in place, lse[r] = logsumexp(scale·s_r) (lse: [B, Nh, L]).
struct P { rows: u32, l: u32, scale: f32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read_write> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = flat_id(wid, nwg, lid);
    if (r >= prm.rows) { return; }
    let base = r * prm.l;
    var m = -3.0e38;
    for (var j = 0u; j < prm.l; j = j + 1u) { m = max(m, s[base + j] * prm.scale); }
    var sum = 0.0;
    for (var j = 0u; j < prm.l; j = j + 1u) {
        let e = exp(s[base + j] * prm.scale - m);
        s[base + j] = e;
        sum = sum + e;
    }
    let inv = 1.0 / sum;
    for (var j = 0u; j < prm.l; j = j + 1u) { s[base + j] = s[base + j] * inv; }
    lse[r] = m + log(sum);
}
