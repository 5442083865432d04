// The register-blocked matmul kernels' B, bias and C (row-major, n % 4 == 0, read and written
// as vec4) and their output rule: rows row0..row0+3 (those below m) of C's vec4 column col4,
// plus the bias when flags & 1.
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> c: array<vec4<f32>>;

fn store4(row0: u32, col4: u32, acc0: vec4<f32>, acc1: vec4<f32>, acc2: vec4<f32>, acc3: vec4<f32>) {
    let n4 = prm.n / 4u;
    var bb = vec4<f32>(0.0);
    if ((prm.flags & 1u) != 0u) { bb = bias[col4]; }
    c[row0 * n4 + col4] = acc0 + bb;
    if (row0 + 1u < prm.m) { c[(row0 + 1u) * n4 + col4] = acc1 + bb; }
    if (row0 + 2u < prm.m) { c[(row0 + 2u) * n4 + col4] = acc2 + bb; }
    if (row0 + 3u < prm.m) { c[(row0 + 3u) * n4 + col4] = acc3 + bb; }
}
