// matmul4 (see matmul4.wgsl) for an A stored transposed (a_rs = 1: A(i, kk) = a[a_off + kk*a_cs + i])
// with m % 4 == 0 and a_cs, a_off multiples of 4: the 4 rows of a block are one vec4 per k-step.
// a_cs4, a_off4, b_rs4, b_off4 are in vec4 units. flags: 1 = bias.
struct P { m: u32, n: u32, k: u32, a_off4: u32, unused: u32, a_cs4: u32, b_off4: u32, b_rs4: u32, flags: u32, row0: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
#include matmul4_out

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col4 = gid.x;
    let row0 = prm.row0 + gid.y * 4u;
    let n4 = prm.n / 4u;
    if (row0 >= prm.m || col4 >= n4) { return; }
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var ka = prm.a_off4 + row0 / 4u;
    var kb = prm.b_off4 + col4;
    for (var kk = 0u; kk < prm.k; kk = kk + 1u) {
        let av = a[ka];
        let bv = b[kb];
        acc0 = acc0 + av.x * bv;
        acc1 = acc1 + av.y * bv;
        acc2 = acc2 + av.z * bv;
        acc3 = acc3 + av.w * bv;
        ka = ka + prm.a_cs4;
        kb = kb + prm.b_rs4;
    }
    store4(row0, col4, acc0, acc1, acc2, acc3);
}
