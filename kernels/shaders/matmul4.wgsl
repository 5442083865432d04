// C[m, n] = A[m, k] · B[k, n] (+ bias[n]) where B and C are row-major with n % 4 == 0, so rows
// of B and C are read and written as vec4 (adjacent invocations touch adjacent memory).
// A(i, kk) = a[a_off + i*a_rs + kk*a_cs] is strided (transposed A is free). Each invocation
// computes a 4×4 block in registers; no shared memory or barriers. flags: 1 = bias.
// b_rs4 and b_off4 are B's row stride and offset in vec4 units.
struct P { m: u32, n: u32, k: u32, a_off: u32, a_rs: u32, a_cs: u32, b_off4: u32, b_rs4: u32, flags: u32, row0: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
#include matmul4_out

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col4 = gid.x;
    let row0 = prm.row0 + gid.y * 4u;
    let n4 = prm.n / 4u;
    if (row0 >= prm.m || col4 >= n4) { return; }
    let last = prm.m - 1u;
    let a_base = vec4<u32>(prm.a_off) + vec4<u32>(min(row0, last), min(row0 + 1u, last), min(row0 + 2u, last), min(row0 + 3u, last)) * prm.a_rs;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var ka = 0u;
    var kb = prm.b_off4 + col4;
    for (var kk = 0u; kk < prm.k; kk = kk + 1u) {
        let bv = b[kb];
        acc0 = acc0 + a[a_base.x + ka] * bv;
        acc1 = acc1 + a[a_base.y + ka] * bv;
        acc2 = acc2 + a[a_base.z + ka] * bv;
        acc3 = acc3 + a[a_base.w + ka] * bv;
        ka = ka + prm.a_cs;
        kb = kb + prm.b_rs4;
    }
    store4(row0, col4, acc0, acc1, acc2, acc3);
}
