// Chunked sum: dst[o_off + t] = scale · Σ_{i in chunk t} f(i).
// mode 0: a[i]²; mode 1: (a[i] − b[i])²; mode 2: a[i].
struct P { n: u32, chunk: u32, mode: u32, scale: f32, o_off: u32, threads: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = flat_id(wid, nwg, lid);
    if (t >= prm.threads) { return; }
    let i0 = t * prm.chunk;
    let i1 = min(i0 + prm.chunk, prm.n);
    var s = 0.0;
    if (prm.mode == 0u) {
        for (var i = i0; i < i1; i = i + 1u) { s = s + a[i] * a[i]; }
    } else if (prm.mode == 1u) {
        for (var i = i0; i < i1; i = i + 1u) { let e = a[i] - b[i]; s = s + e * e; }
    } else {
        for (var i = i0; i < i1; i = i + 1u) { s = s + a[i]; }
    }
    dst[prm.o_off + t] = s * prm.scale;
}
