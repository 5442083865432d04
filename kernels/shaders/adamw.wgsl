// In-place AdamW (reference: mvdit_core::ops::adamw_step); the host folds the step's scalars.
// Those that change from step to step sit in `sc` = [decay, step_size, sqrt_bc2, grad scale],
// so the dispatch itself (and its command buffer) is the same every step.
struct P { n: u32, b1: f32, b2: f32, omb1: f32, omb2: f32, eps: f32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> p: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> sc: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let gi = g[i] * sc[3];
    let mi = prm.b1 * m[i] + prm.omb1 * gi;
    let vi = prm.b2 * v[i] + prm.omb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * sc[0] - sc[1] * mi / (sqrt(vi) / sc[2] + prm.eps);
}
