// Max |x| for the f16 operand scale, in at most two dispatches. is_final = 0: workgroup g of
// `groups` strides over src[0..n) (neighbouring invocations read neighbouring values) and
// writes its maximum to dst[o_off + g]. is_final = 1 (one workgroup): the maximum m of src[0..n)
// becomes the scale 2^(14 − ceil(log2 m)) at dst[o_off], so the scaled operand's largest value
// is at most 2^14 (f16 overflows past 65504 ≈ 2^16 and loses precision below 2^-14: small
// gradients would otherwise underflow).
struct P { n: u32, groups: u32, o_off: u32, is_final: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var m = 0.0;
    for (var i = wid.x * 256u + lid; i < prm.n; i = i + prm.groups * 256u) { m = max(m, abs(src[i])); }
    red[lid] = m;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
        workgroupBarrier();
    }
    if (lid != 0u) { return; }
    let top = red[0];
    if (prm.is_final == 0u) {
        dst[prm.o_off + wid.x] = top;
        return;
    }
    var e = 0.0;
    if (top > 0.0) { e = clamp(14.0 - ceil(log2(top)), -100.0, 100.0); }
    dst[prm.o_off] = exp2(e);
}
