// C_z = Ah_z · Bh_z / (scales[0]·scales[1]) (+ bias) on cooperative-matrix units, from the
// padded, scaled f16 operands `to_f16_pad` writes (m_p, n_p multiples of 64, k_p of 16), like
// `matmul_coop` but writing C itself (the `matmul_out` rule, `store_c`), so no padded f32
// product goes through memory. Four subgroups share one 8S×8S block of the product (2×2
// sub-blocks of 4×4 S×S fragments each); per step of 2S along k the workgroup copies the
// block's A rows and B columns into workgroup memory (8-byte loads, rows padded by 8 halves
// against bank conflicts) and every subgroup takes its fragments from there. Rows and columns
// past m_p, n_p are staged as zeros; past m, n nothing is stored. At the end each fragment goes
// through a per-subgroup S×S slot of workgroup memory, and the subgroup's lanes store it.
//
// Written over S, SG, FA, FB, FC (see kernels/src/lib.rs); needs subgroups exactly SG wide.
struct P { mp: u32, np: u32, kp: u32, row0: u32, m: u32, n: u32, flags: u32, nh: u32, c_sb: u32, c_sh: u32, c_rs: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> ah: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> bh: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read> scales: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

#include matmul_store

const BM: u32 = 8u * S;
const BK: u32 = 2u * S;
const AST: u32 = BK + 8u;
const BST: u32 = BM + 8u;
const THREADS: u32 = 4u * SG;
var<workgroup> at: array<f16, BM * AST>;
var<workgroup> bt: array<f16, BK * BST>;
var<workgroup> ep: array<f32, 4u * S * S>;

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let mp = prm.mp;
    let np = prm.np;
    let kp = prm.kp;
    let r0 = prm.row0 + wid.y * BM;
    let c0 = wid.x * BM;
    // In units of 4 halves.
    let oa4 = wid.z * mp * kp / 4u;
    let ob4 = wid.z * kp * np / 4u;
    // This subgroup's sub-block within the block.
    let sr = (sg / 2u) * 4u * S;
    let sc = (sg % 2u) * 4u * S;
    var acc: array<FC, 16>;
    for (var k0 = 0u; k0 < kp; k0 = k0 + BK) {
        // A rows r0.., columns k0..k0+BK; B rows k0..k0+BK, columns c0.. (zeros past the ends).
        for (var e = lid; e < BM * BK / 4u; e = e + THREADS) {
            let r = e / (BK / 4u);
            let q = 4u * (e % (BK / 4u));
            var v = vec4<f16>();
            if (r0 + r < mp && k0 + q < kp) { v = ah[oa4 + ((r0 + r) * kp + k0 + q) / 4u]; }
            let w = r * AST + q;
            at[w] = v.x; at[w + 1u] = v.y; at[w + 2u] = v.z; at[w + 3u] = v.w;
        }
        for (var e = lid; e < BK * BM / 4u; e = e + THREADS) {
            let r = e / (BM / 4u);
            let q = 4u * (e % (BM / 4u));
            var v = vec4<f16>();
            if (k0 + r < kp && c0 + q < np) { v = bh[ob4 + ((k0 + r) * np + c0 + q) / 4u]; }
            let w = r * BST + q;
            bt[w] = v.x; bt[w + 1u] = v.y; bt[w + 2u] = v.z; bt[w + 3u] = v.w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + S) {
            var fa: array<FA, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                fa[i] = coopLoadT<FA>(&at[(sr + S * i) * AST + kk], AST);
            }
            for (var j = 0u; j < 4u; j = j + 1u) {
                let fb = coopLoadT<FB>(&bt[kk * BST + sc + S * j], BST);
                for (var i = 0u; i < 4u; i = i + 1u) {
                    acc[4u * i + j] = coopMultiplyAdd(fa[i], fb, acc[4u * i + j]);
                }
            }
        }
        workgroupBarrier();
    }
    // Fragment f = 4i + j covers rows r0 + sr + S·i.., columns c0 + sc + S·j.. (every
    // subgroup runs all 16 rounds, so the barriers stay in uniform control flow).
    let slot = sg * S * S;
    for (var f = 0u; f < 16u; f = f + 1u) {
        // Through `let`s: naga 30 does not emit expressions made inside a coopStore call.
        let tile = acc[f];
        let at_slot = slot;
        coopStoreT(tile, &ep[at_slot], S);
        workgroupBarrier();
        let fr = r0 + sr + S * (f / 4u);
        let fc = c0 + sc + S * (f % 4u);
        for (var e = lane; e < S * S; e = e + SG) {
            let i = fr + e / S;
            let j = fc + e % S;
            if (i < prm.m && j < prm.n) { store_c(wid.z, i, j, ep[slot + e]); }
        }
        workgroupBarrier();
    }
}
