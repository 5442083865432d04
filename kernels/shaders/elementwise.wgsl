// Two-input element-wise ops. mode 0: out = a·x + b·y (axpby); mode 1: out = a·(x − y) (mse grad).
struct P { n: u32, mode: u32, a: f32, b: f32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    if (prm.mode == 0u) {
        out[i] = prm.a * x[i] + prm.b * y[i];
    } else {
        out[i] = prm.a * (x[i] - y[i]);
    }
}
