// SwiGLU over rows [g | v] of width 2m, one invocation per output element (row, i).
// mode 0: y = silu(g)·v; mode 1: dgv from dy, silu'(g) = σ(g)(1 + g(1 − σ(g))).
struct P { n: u32, m: u32, mode: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> gv: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let c = i % prm.m;
    let row = i / prm.m;
    let gi = row * 2u * prm.m + c;
    let g = gv[gi];
    let v = gv[gi + prm.m];
    let sg = 1.0 / (1.0 + exp(-g));
    if (prm.mode == 0u) {
        out[i] = g * sg * v;
    } else {
        out[gi] = dy[i] * v * sg * (1.0 + g * (1.0 - sg));
        out[gi + prm.m] = dy[i] * g * sg;
    }
}
