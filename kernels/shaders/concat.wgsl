// a: [B, La, D], b: [B, Lb, D] → out: [B, La+Lb, D].
struct P { n: u32, la: u32, lb: u32, d: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let l = prm.la + prm.lb;
    let c = i % prm.d;
    let t = (i / prm.d) % l;
    let bi = i / (prm.d * l);
    if (t < prm.la) {
        dst[i] = a[(bi * prm.la + t) * prm.d + c];
    } else {
        dst[i] = b[(bi * prm.lb + t - prm.la) * prm.d + c];
    }
}
