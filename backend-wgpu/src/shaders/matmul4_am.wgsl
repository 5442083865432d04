// matmul4 (see matmul4.wgsl) for an A stored transposed (a_rs = 1: A(i, kk) = a[a_off + kk*a_cs + i])
// with m % 4 == 0 and a_cs, a_off multiples of 4: the 4 rows of a block are one vec4 per k-step.
// a_cs4, a_off4, b_rs4, b_off4 are in vec4 units. flags: 1 = bias.
struct P { m: u32, n: u32, k: u32, a_off4: u32, unused: u32, a_cs4: u32, b_off4: u32, b_rs4: u32, flags: u32, row0: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> c: array<vec4<f32>>;

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
    if ((prm.flags & 1u) != 0u) {
        let bb = bias[col4];
        acc0 = acc0 + bb;
        acc1 = acc1 + bb;
        acc2 = acc2 + bb;
        acc3 = acc3 + bb;
    }
    c[row0 * n4 + col4] = acc0;
    c[(row0 + 1u) * n4 + col4] = acc1;
    c[(row0 + 2u) * n4 + col4] = acc2;
    c[(row0 + 3u) * n4 + col4] = acc3;
}
