// The tiled matmul kernels' interface: A(i, kk) = a[oa + i*a_rs + kk*a_cs],
// B(kk, j) = b[ob + kk*b_rs + j*b_cs], C(i, j) = c[oc + i*c_rs + j] (+ bias[j] when flags & 1)
// for rows row0.. of C and each z of a batch (see matmul_tiled.wgsl).
struct P {
    m: u32, n: u32, k: u32, a_rs: u32, a_cs: u32, b_rs: u32, b_cs: u32, flags: u32, row0: u32,
    nh: u32, a_sb: u32, a_sh: u32, b_sb: u32, b_sh: u32, c_sb: u32, c_sh: u32, c_rs: u32,
}
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// Offsets of A, B and C for batch entry z = zb·nh + zh.
fn batch_offsets(z: u32) -> vec3<u32> {
    let zb = z / prm.nh;
    let zh = z % prm.nh;
    return vec3<u32>(zb * prm.a_sb + zh * prm.a_sh, zb * prm.b_sb + zh * prm.b_sh, zb * prm.c_sb + zh * prm.c_sh);
}

// One element of the slices a workgroup stages per step along k (through `operand`: the value
// itself in f32 kernels, rounded to f16 in the `_h` ones): its place in the slice (i: row
// of A or column of B; kk: along k) and value (0 past the operand's edges).
struct Staged { i: u32, kk: u32, v: f32 }

// Element e (of tm·tk) of A[r0.., k0..] (offset oa). Consecutive e walk A's unit-stride
// dimension, so global reads coalesce.
fn stage_a(e: u32, tm: u32, tk: u32, oa: u32, r0: u32, k0: u32) -> Staged {
    var r = e % tm;
    var kk = e / tm;
    if (prm.a_cs == 1u) { r = e / tk; kk = e % tk; }
    var v = 0.0;
    if (r0 + r < prm.m && k0 + kk < prm.k) { v = operand(a[oa + (r0 + r) * prm.a_rs + (k0 + kk) * prm.a_cs]); }
    return Staged(r, kk, v);
}

// Element e (of tk·tn) of B[k0.., c0..] (offset ob), likewise.
fn stage_b(e: u32, tn: u32, tk: u32, ob: u32, c0: u32, k0: u32) -> Staged {
    var col = e / tk;
    var kk = e % tk;
    if (prm.b_cs == 1u) { col = e % tn; kk = e / tn; }
    var v = 0.0;
    if (c0 + col < prm.n && k0 + kk < prm.k) { v = operand(b[ob + (k0 + kk) * prm.b_rs + (c0 + col) * prm.b_cs]); }
    return Staged(col, kk, v);
}
