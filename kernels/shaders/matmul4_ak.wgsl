// matmul4 (see matmul4.wgsl) for an A whose rows are contiguous along k (a_cs = 1, k % 4 == 0,
// row stride and offset multiples of 4): A is read as vec4 along k, four k-steps per iteration.
// a_rs4, a_off4, b_rs4, b_off4 are in vec4 units. flags: 1 = bias.
struct P { m: u32, n: u32, k: u32, a_off4: u32, a_rs4: u32, unused: u32, b_off4: u32, b_rs4: u32, flags: u32, row0: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
#include matmul4_out

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col4 = gid.x;
    let row0 = prm.row0 + gid.y * 4u;
    let n4 = prm.n / 4u;
    if (row0 >= prm.m || col4 >= n4) { return; }
    let last = prm.m - 1u;
    let ab = vec4<u32>(prm.a_off4) + vec4<u32>(min(row0, last), min(row0 + 1u, last), min(row0 + 2u, last), min(row0 + 3u, last)) * prm.a_rs4;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var kb = prm.b_off4 + col4;
    let k4 = prm.k / 4u;
    for (var q = 0u; q < k4; q = q + 1u) {
        let b0 = b[kb];
        let b1 = b[kb + prm.b_rs4];
        let b2 = b[kb + 2u * prm.b_rs4];
        let b3 = b[kb + 3u * prm.b_rs4];
        let a0 = a[ab.x + q];
        let a1 = a[ab.y + q];
        let a2 = a[ab.z + q];
        let a3 = a[ab.w + q];
        acc0 = acc0 + a0.x * b0 + a0.y * b1 + a0.z * b2 + a0.w * b3;
        acc1 = acc1 + a1.x * b0 + a1.y * b1 + a1.z * b2 + a1.w * b3;
        acc2 = acc2 + a2.x * b0 + a2.y * b1 + a2.z * b2 + a2.w * b3;
        acc3 = acc3 + a3.x * b0 + a3.y * b1 + a3.z * b2 + a3.w * b3;
        kb = kb + 4u * prm.b_rs4;
    }
    store4(row0, col4, acc0, acc1, acc2, acc3);
}
