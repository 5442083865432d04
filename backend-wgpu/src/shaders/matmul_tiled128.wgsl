// `matmul_tiled` (same parameters, bindings, strides and batch) with a 128×128 tile of C per
// 16×16 workgroup: each invocation computes an 8×8 block, rows 4·ly + {0..3} and 64 + 4·ly +
// {0..3}, columns 4·lx + {0..3} and 64 + 4·lx + {0..3}, so every step along k reads two vec4 of
// A and two of B from workgroup memory for 64 multiply-adds (the 64×64 kernel reads eight
// scalars for 16). K advances in steps of 8; the workgroup stages 128×8 of A and 8×128 of B
// (k-major), each invocation loading 4 values of each, along the operand's unit stride.
// flags: 1 = bias.
struct P {
    m: u32, n: u32, k: u32, a_rs: u32, a_cs: u32, b_rs: u32, b_cs: u32, flags: u32, row0: u32,
    nh: u32, a_sb: u32, a_sh: u32, b_sb: u32, b_sh: u32, c_sb: u32, c_sh: u32, c_rs: u32,
}
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const TM: u32 = 128u;
const TN: u32 = 128u;
const TK: u32 = 8u;
var<workgroup> As: array<vec4<f32>, 256>; // [TK][TM / 4]
var<workgroup> Bs: array<vec4<f32>, 256>; // [TK][TN / 4]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let zb = wid.z / prm.nh;
    let zh = wid.z % prm.nh;
    let oa = zb * prm.a_sb + zh * prm.a_sh;
    let ob = zb * prm.b_sb + zh * prm.b_sh;
    let oc = zb * prm.c_sb + zh * prm.c_sh;
    let tile_r = prm.row0 + wid.y * TM;
    let tile_c = wid.x * TN;
    let lx = lid3.x;
    let ly = lid3.y;
    let a_kfast = prm.a_cs == 1u;
    let b_cfast = prm.b_cs == 1u;
    var acc: array<vec4<f32>, 16>;
    for (var k0 = 0u; k0 < prm.k; k0 = k0 + TK) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let e = li + 256u * i;
            var r = e % TM;
            var ka = e / TM;
            if (a_kfast) { r = e / TK; ka = e % TK; }
            let gr = tile_r + r;
            let gka = k0 + ka;
            var av = 0.0;
            if (gr < prm.m && gka < prm.k) { av = a[oa + gr * prm.a_rs + gka * prm.a_cs]; }
            As[ka * 32u + r / 4u][r % 4u] = av;
            var col = e / TK;
            var kb = e % TK;
            if (b_cfast) { col = e % TN; kb = e / TN; }
            let gc = tile_c + col;
            let gkb = k0 + kb;
            var bv = 0.0;
            if (gc < prm.n && gkb < prm.k) { bv = b[ob + gkb * prm.b_rs + gc * prm.b_cs]; }
            Bs[kb * 32u + col / 4u][col % 4u] = bv;
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
                    c[oc + row * prm.c_rs + col] = v;
                }
            }
        }
    }
}
