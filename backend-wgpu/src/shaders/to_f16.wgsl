// f32 → f16 operand copy, scaled by the power of two scales[slot]: dst[i] holds values 2i, 2i+1
// (a pair per invocation, so no two invocations write the same 32-bit word).
struct P { n: u32, pairs: u32, slot: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec2<f16>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.pairs) { return; }
    let s = scales[prm.slot];
    let lo = src[2u * i] * s;
    var hi = 0.0;
    if (2u * i + 1u < prm.n) { hi = src[2u * i + 1u] * s; }
    dst[i] = vec2<f16>(f16(lo), f16(hi));
}
