// x: [B, L, D] → out: [B, Lo, D] = tokens [off, off + Lo).
struct P { n: u32, l: u32, off: u32, lo: u32, d: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let c = i % prm.d;
    let t = (i / prm.d) % prm.lo;
    let bi = i / (prm.d * prm.lo);
    dst[i] = src[(bi * prm.l + prm.off + t) * prm.d + c];
}
