// Column sums over chunks of rows: out[o_off + ch*cols + col] = Σ_{r in chunk ch} f(r, col).
// mode 0: f = a[a_off + r*cols + col]; mode 1 (RMSNorm gain grad): f = a[r, col] * b[r, col] * c[r].
struct P { rows: u32, cols: u32, chunk: u32, mode: u32, n: u32, a_off: u32, o_off: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let col = i % prm.cols;
    let ch = i / prm.cols;
    let r0 = ch * prm.chunk;
    let r1 = min(r0 + prm.chunk, prm.rows);
    var s = 0.0;
    if (prm.mode == 0u) {
        for (var r = r0; r < r1; r = r + 1u) {
            s = s + a[prm.a_off + r * prm.cols + col];
        }
    } else {
        for (var r = r0; r < r1; r = r + 1u) {
            let k = r * prm.cols + col;
            s = s + a[k] * b[k] * c[r];
        }
    }
    dst[prm.o_off + i] = s;
}
