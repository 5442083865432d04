// Attention backward, dK and dV: one invocation per (b, h, key j); P rebuilt from lse.
// dV_j = Σ_i P_ij dO_i, dK_j = Σ_i dS_ij Q_i.
const DHMAX: u32 = {{DHMAX}}u;
struct P { rows: u32, l: u32, nh: u32, dh: u32, scale: f32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> dd: array<f32>;
@group(0) @binding(6) var<storage, read> d_o: array<f32>;
@group(0) @binding(7) var<storage, read_write> dk: array<f32>;
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = flat_id(wid, nwg, lid);
    if (r >= prm.rows) { return; }
    let j = r % prm.l;
    let bh = r / prm.l;
    let h = bh % prm.nh;
    let b = bh / prm.nh;
    let stride = prm.nh * prm.dh;
    let head0 = (b * prm.l * prm.nh + h) * prm.dh;
    let kb = head0 + j * stride;
    var kv: array<f32, DHMAX>;
    var vv: array<f32, DHMAX>;
    var dka: array<f32, DHMAX>;
    var dva: array<f32, DHMAX>;
    for (var e = 0u; e < prm.dh; e = e + 1u) { kv[e] = k[kb + e]; vv[e] = v[kb + e]; dka[e] = 0.0; dva[e] = 0.0; }
    let row0 = bh * prm.l;
    for (var i = 0u; i < prm.l; i = i + 1u) {
        let qb = head0 + i * stride;
        var s = 0.0;
        var dp = 0.0;
        for (var e = 0u; e < prm.dh; e = e + 1u) {
            s = s + q[qb + e] * kv[e];
            dp = dp + d_o[qb + e] * vv[e];
        }
        let p = exp(s * prm.scale - lse[row0 + i]);
        let ds = p * (dp - dd[row0 + i]) * prm.scale;
        for (var e = 0u; e < prm.dh; e = e + 1u) {
            dva[e] = dva[e] + p * d_o[qb + e];
            dka[e] = dka[e] + ds * q[qb + e];
        }
    }
    for (var e = 0u; e < prm.dh; e = e + 1u) { dk[kb + e] = dka[e]; dv[kb + e] = dva[e]; }
}
