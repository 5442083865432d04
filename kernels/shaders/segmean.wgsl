// Segment means of x: [B, L, D] over tokens [0, s0end) and [s0end, L):
// dst[o_off + (b*2 + seg)*D + c] (0 for an empty segment).
struct P { n: u32, l: u32, d: u32, s0end: u32, o_off: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let c = i % prm.d;
    let seg = (i / prm.d) % 2u;
    let b = i / (2u * prm.d);
    var t0 = 0u;
    var t1 = prm.s0end;
    if (seg == 1u) { t0 = prm.s0end; t1 = prm.l; }
    var s = 0.0;
    for (var t = t0; t < t1; t = t + 1u) { s = s + src[(b * prm.l + t) * prm.d + c]; }
    var m = 0.0;
    if (t1 > t0) { m = s * (1.0 / f32(t1 - t0)); }
    dst[prm.o_off + i] = m;
}
