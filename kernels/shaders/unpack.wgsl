// 16-bit weights → f32, element-wise: out[i] is the i-th 16-bit pattern of `w` (two a word,
// the lower half first) read as bf16 (mode 0) or IEEE f16 (mode 1). Exact, subnormals included.
struct P { n: u32, mode: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn f16_to_f32(h: u32) -> f32 {
    let s = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // Zero or subnormal: m·2^-24 (exact in f32), with the sign.
        return bitcast<f32>(s | bitcast<u32>(f32(m) * bitcast<f32>(0x33800000u)));
    }
    if (e == 31u) {
        return bitcast<f32>(s | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(s | ((e + 112u) << 23u) | (m << 13u));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let h = (w[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu;
    if (prm.mode == 0u) {
        out[i] = bitcast<f32>(h << 16u);
    } else {
        out[i] = f16_to_f32(h);
    }
}
