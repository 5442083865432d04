// The padded f16 matmul's output rule: C_z(i, j) = v / (scales[0]·scales[1]) (+ bias[j] when
// flags & 1) at c[o_z + i*c_rs + j], o_z = (z / nh)·c_sb + (z % nh)·c_sh, for a product v of
// the scaled f16 operands.
fn store_c(z: u32, i: u32, j: u32, v: f32) {
    var w = v / (scales[0] * scales[1]);
    if ((prm.flags & 1u) != 0u) { w = w + bias[j]; }
    c[(z / prm.nh) * prm.c_sb + (z % prm.nh) * prm.c_sh + i * prm.c_rs + j] = w;
}
