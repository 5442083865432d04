// dλ partial sums: part[ch*d + col] = Σ_{rows r in chunk ch} ds[r, col]·u[r, col]
// (ds = the dx of residual_bwd.wgsl); the chunks are then summed by colsum.
struct P { rows: u32, d: u32, chunk: u32, n: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> ds: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let col = i % prm.d;
    let r0 = (i / prm.d) * prm.chunk;
    let r1 = min(r0 + prm.chunk, prm.rows);
    var acc = 0.0;
    for (var r = r0; r < r1; r = r + 1u) {
        let k = r * prm.d + col;
        acc = acc + ds[k] * u[k];
    }
    part[i] = acc;
}
