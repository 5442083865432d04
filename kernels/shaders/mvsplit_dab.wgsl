// MV-Split backward, step 4: per chunk of rows, partial dα (columns [0, D)) and dβ (columns
// [D, 2D)): dα = Σ ds⊙(Mu − Mx), dβ = Σ ds⊙(u − Mu). dst: [chunks, 2D].
struct P { n: u32, rows: u32, l: u32, d: u32, s0end: u32, chunk: u32, mu_off: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> ds: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read> means: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let d2 = 2u * prm.d;
    let col = i % d2;
    let ch = i / d2;
    let is_beta = col >= prm.d;
    var c = col;
    if (is_beta) { c = col - prm.d; }
    let r0 = ch * prm.chunk;
    let r1 = min(r0 + prm.chunk, prm.rows);
    var s = 0.0;
    for (var r = r0; r < r1; r = r + 1u) {
        let t = r % prm.l;
        let b = r / prm.l;
        var seg = 0u;
        if (t >= prm.s0end) { seg = 1u; }
        let mb = (b * 2u + seg) * prm.d + c;
        let mu = means[prm.mu_off + mb];
        let k = r * prm.d + c;
        if (is_beta) {
            s = s + ds[k] * (u[k] - mu);
        } else {
            s = s + ds[k] * (mu - means[mb]);
        }
    }
    dst[i] = s;
}
