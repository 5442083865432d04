// MV-Split backward, step 3 (element-wise): dx = ds − α M(ds), du = β ds + (α − β) M(ds).
struct P { n: u32, l: u32, d: u32, s0end: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> ds: array<f32>;
@group(0) @binding(2) var<storage, read> alpha: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> mds: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> du: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let c = i % prm.d;
    let r = i / prm.d;
    let t = r % prm.l;
    let b = r / prm.l;
    var seg = 0u;
    if (t >= prm.s0end) { seg = 1u; }
    let m = mds[(b * 2u + seg) * prm.d + c];
    dx[i] = ds[i] - alpha[c] * m;
    du[i] = beta[c] * ds[i] + (alpha[c] - beta[c]) * m;
}
