// f32 operand → dense row-major f16 [rows_p, cols_p], zero-padded, times the power of two
// scales[slot]: dst(r, c) = src[r*rs + c*cs]·s for r < rows and c < cols, else 0. The strides
// take transposed operands as they are. Two columns per invocation (cols_p is even), so no two
// invocations write the same 32-bit word.
struct P { rows: u32, cols: u32, rs: u32, cs: u32, rows_p: u32, cols_p: u32, slot: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec2<f16>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    let pairs = prm.cols_p / 2u;
    if (i >= prm.rows_p * pairs) { return; }
    let r = i / pairs;
    let c = 2u * (i % pairs);
    let s = scales[prm.slot];
    var lo = 0.0;
    var hi = 0.0;
    if (r < prm.rows) {
        if (c < prm.cols) { lo = src[r * prm.rs + c * prm.cs] * s; }
        if (c + 1u < prm.cols) { hi = src[r * prm.rs + (c + 1u) * prm.cs] * s; }
    }
    dst[i] = vec2<f16>(f16(lo), f16(hi));
}
