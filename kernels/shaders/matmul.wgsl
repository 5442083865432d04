// C[m, n] (row-major, dense) = A[m, k] · B[k, n] (+ bias[n]) (+ C when accumulating).
// A(i, kk) = a[a_off + i*a_rs + kk*a_cs], B(kk, j) = b[b_off + kk*b_rs + j*b_cs]: strides make
// transposed operands free. Register-blocked: each invocation computes a 4×4 block with no
// shared memory or barriers (barriers are slow on lavapipe). flags: 1 = bias, 2 = accumulate.
struct P { m: u32, n: u32, k: u32, a_off: u32, a_rs: u32, a_cs: u32, b_off: u32, b_rs: u32, b_cs: u32, flags: u32, row0: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col0 = gid.x * 4u;
    let row0 = prm.row0 + gid.y * 4u;
    if (row0 >= prm.m || col0 >= prm.n) { return; }
    // Out-of-range rows/columns read a valid element and are never stored.
    let ra = vec4<u32>(min(row0, prm.m - 1u), min(row0 + 1u, prm.m - 1u), min(row0 + 2u, prm.m - 1u), min(row0 + 3u, prm.m - 1u));
    let cb = vec4<u32>(min(col0, prm.n - 1u), min(col0 + 1u, prm.n - 1u), min(col0 + 2u, prm.n - 1u), min(col0 + 3u, prm.n - 1u));
    let a_base = vec4<u32>(prm.a_off) + ra * prm.a_rs;
    let b_base = vec4<u32>(prm.b_off) + cb * prm.b_cs;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var ka = 0u;
    var kb = 0u;
    for (var kk = 0u; kk < prm.k; kk = kk + 1u) {
        let bv = vec4<f32>(b[b_base.x + kb], b[b_base.y + kb], b[b_base.z + kb], b[b_base.w + kb]);
        acc0 = acc0 + a[a_base.x + ka] * bv;
        acc1 = acc1 + a[a_base.y + ka] * bv;
        acc2 = acc2 + a[a_base.z + ka] * bv;
        acc3 = acc3 + a[a_base.w + ka] * bv;
        ka = ka + prm.a_cs;
        kb = kb + prm.b_rs;
    }
    if ((prm.flags & 1u) != 0u) {
        let bb = vec4<f32>(bias[cb.x], bias[cb.y], bias[cb.z], bias[cb.w]);
        acc0 = acc0 + bb;
        acc1 = acc1 + bb;
        acc2 = acc2 + bb;
        acc3 = acc3 + bb;
    }
    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = row0 + i;
        if (row >= prm.m) { break; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = col0 + j;
            if (col >= prm.n) { break; }
            let idx = row * prm.n + col;
            if ((prm.flags & 2u) != 0u) {
                c[idx] = c[idx] + acc[i][j];
            } else {
                c[idx] = acc[i][j];
            }
        }
    }
}
