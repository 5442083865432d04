// `matmul_tiled` (same parameters, bindings, strides, batch and operand rounding) with a 128×128
// tile of C per 16×16 workgroup: each invocation computes an 8×8 block, rows 4·ly + {0..3} and 64 + 4·ly +
// {0..3}, columns 4·lx + {0..3} and 64 + 4·lx + {0..3}, so every step along k reads two vec4 of
// A and two of B from workgroup memory for 64 multiply-adds (the 64×64 kernel reads eight
// scalars for 16). K advances in steps of 8; the workgroup stages 128×8 of A and 8×128 of B
// (k-major), each invocation loading 4 values of each, along the operand's unit stride.
// flags: 1 = bias.
#include matmul_params

const TM: u32 = 128u;
const TN: u32 = 128u;
const TK: u32 = 8u;
var<workgroup> As: array<vec4<f32>, 256>; // [TK][TM / 4]
var<workgroup> Bs: array<vec4<f32>, 256>; // [TK][TN / 4]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let o = batch_offsets(wid.z);
    let tile_r = prm.row0 + wid.y * TM;
    let tile_c = wid.x * TN;
    let lx = lid3.x;
    let ly = lid3.y;
    var acc: array<vec4<f32>, 16>;
    for (var k0 = 0u; k0 < prm.k; k0 = k0 + TK) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let sa = stage_a(li + 256u * i, TM, TK, o.x, tile_r, k0);
            As[sa.kk * 32u + sa.i / 4u][sa.i % 4u] = sa.v;
            let sb = stage_b(li + 256u * i, TN, TK, o.y, tile_c, k0);
            Bs[sb.kk * 32u + sb.i / 4u][sb.i % 4u] = sb.v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            let a0 = As[kk * 32u + ly];
            let a1 = As[kk * 32u + 16u + ly];
            let b0 = Bs[kk * 32u + lx];
            let b1 = Bs[kk * 32u + 16u + lx];
            acc[0] = acc[0] + a0.x * b0;
            acc[1] = acc[1] + a0.x * b1;
            acc[2] = acc[2] + a0.y * b0;
            acc[3] = acc[3] + a0.y * b1;
            acc[4] = acc[4] + a0.z * b0;
            acc[5] = acc[5] + a0.z * b1;
            acc[6] = acc[6] + a0.w * b0;
            acc[7] = acc[7] + a0.w * b1;
            acc[8] = acc[8] + a1.x * b0;
            acc[9] = acc[9] + a1.x * b1;
            acc[10] = acc[10] + a1.y * b0;
            acc[11] = acc[11] + a1.y * b1;
            acc[12] = acc[12] + a1.z * b0;
            acc[13] = acc[13] + a1.z * b1;
            acc[14] = acc[14] + a1.w * b0;
            acc[15] = acc[15] + a1.w * b1;
        }
        workgroupBarrier();
    }
    // acc[2i + h]: row (i < 4 ? 4·ly + i : 64 + 4·ly + i − 4), columns 4·lx + 64·h + {0..3}.
    for (var i = 0u; i < 8u; i = i + 1u) {
        let row = tile_r + 4u * ly + i + select(0u, 60u, i >= 4u);
        if (row >= prm.m) { continue; }
        for (var h = 0u; h < 2u; h = h + 1u) {
            let v4 = acc[2u * i + h];
            for (var j = 0u; j < 4u; j = j + 1u) {
                let col = tile_c + 64u * h + 4u * lx + j;
                if (col < prm.n) {
                    var v = v4[j];
                    if ((prm.flags & 1u) != 0u) { v = v + bias[col]; }
                    c[o.z + row * prm.c_rs + col] = v;
                }
            }
        }
    }
}
