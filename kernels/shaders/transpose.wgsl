// dst[c, r] = src[r, c] for src: [rows, cols].
struct P { n: u32, rows: u32, cols: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let r = i % prm.rows;
    let c = i / prm.rows;
    dst[i] = src[r * prm.cols + c];
}
