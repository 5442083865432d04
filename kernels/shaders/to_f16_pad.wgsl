// f32 operands → dense row-major f16 [Z, rows_p, cols_p], zero-padded, times scales[slot]
// (rounded by `to_f16`: ±inf past 65504): dst(z, r, c) = src[o_z + r*rs + c*cs]·s for
// r < rows and c < cols, else 0, with
// o_z = (z / nh)·sb + (z % nh)·sh (one operand per (sample, head) of a batch; Z = 1, offsets 0
// for one matrix). The strides take transposed operands as they are. Two columns per
// invocation (cols_p is even), so no two invocations write the same 32-bit word.
struct P { rows: u32, cols: u32, rs: u32, cs: u32, rows_p: u32, cols_p: u32, slot: u32, nh: u32, sb: u32, sh: u32, count: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec2<f16>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    let pairs = prm.cols_p / 2u;
    let per = prm.rows_p * pairs;
    let z = i / per;
    if (z >= prm.count) { return; }
    let r = (i % per) / pairs;
    let c = 2u * (i % pairs);
    let o = (z / prm.nh) * prm.sb + (z % prm.nh) * prm.sh;
    let s = scales[prm.slot];
    var lo = 0.0;
    var hi = 0.0;
    if (r < prm.rows) {
        if (c < prm.cols) { lo = src[o + r * prm.rs + c * prm.cs] * s; }
        if (c + 1u < prm.cols) { hi = src[o + r * prm.rs + (c + 1u) * prm.cs] * s; }
    }
    dst[i] = vec2<f16>(to_f16(lo), to_f16(hi));
}
