// Attention backward on materialised scores, one invocation per element (r = z·L + i, j) of
// s, dp: [BH, L, L]: P = exp(scale·S − lse[r]) replaces S, and dS = P·(dP − dd[r])·scale
// replaces dP (dd[r] = dO_r·O_r). lse, dd: [B, Nh, L].
struct P { n: u32, l: u32, scale: f32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read_write> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> dp: array<f32>;
@group(0) @binding(3) var<storage, read> lse: array<f32>;
@group(0) @binding(4) var<storage, read> dd: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let idx = flat_id(wid, nwg, lid);
    if (idx >= prm.n) { return; }
    let r = idx / prm.l;
    let p = exp(s[idx] * prm.scale - lse[r]);
    s[idx] = p;
    dp[idx] = p * (dp[idx] - dd[r]) * prm.scale;
}
