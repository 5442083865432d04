// Chunked max |x| for the f16 operand scale: dst[o_off + t] = max_{i in chunk t} |src[i]|.
// With is_final = 1 (one thread left) it writes the scale 2^(14 − ceil(log2 max)) instead, so
// the scaled operand's largest value is at most 2^14 (f16 overflows past 65504 ≈ 2^16 and loses
// precision below 2^-14: small gradients would otherwise underflow).
struct P { n: u32, chunk: u32, threads: u32, o_off: u32, is_final: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = flat_id(wid, nwg, lid);
    if (t >= prm.threads) { return; }
    let i0 = t * prm.chunk;
    let i1 = min(i0 + prm.chunk, prm.n);
    var m = 0.0;
    for (var i = i0; i < i1; i = i + 1u) { m = max(m, abs(src[i])); }
    if (prm.is_final == 0u) {
        dst[prm.o_off + t] = m;
        return;
    }
    var e = 0.0;
    if (m > 0.0) { e = clamp(14.0 - ceil(log2(m)), -100.0, 100.0); }
    dst[prm.o_off + t] = exp2(e);
}
