// Cp_z[m_p, n_p] = Ah_z[m_p, k_p] · Bh_z[k_p, n_p] on cooperative-matrix units, like
// `matmul_coop`, with the operands staged in workgroup memory: four subgroups share one
// 8S×8S block of Cp (2×2 sub-blocks of 4×4 S×S fragments each); per step of 2S along k the
// workgroup copies the block's A rows and B columns into workgroup memory (8-byte loads, rows
// padded by 8 halves against bank conflicts) and every subgroup takes its fragments from there.
// Operands as `to_f16_pad` writes them (m_p, n_p multiples of 64, k_p of 16): rows and
// columns past m_p, n_p in the last block are staged as zeros and not stored (a sub-block is
// either wholly inside or wholly outside, as 4S divides 64).
//
// Written over S, SG, FA, FB, FC (see kernel_src.rs); needs subgroups exactly SG wide.
struct P { mp: u32, np: u32, kp: u32, row0: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> ah: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> bh: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read_write> cp: array<f32>;

const BM: u32 = 8u * S;
const BK: u32 = 2u * S;
const AST: u32 = BK + 8u;
const BST: u32 = BM + 8u;
const THREADS: u32 = 4u * SG;
var<workgroup> at: array<f16, BM * AST>;
var<workgroup> bt: array<f16, BK * BST>;

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg: u32) {
    let mp = prm.mp;
    let np = prm.np;
    let kp = prm.kp;
    let r0 = prm.row0 + wid.y * BM;
    let c0 = wid.x * BM;
    // In units of 4 halves.
    let oa4 = wid.z * mp * kp / 4u;
    let ob4 = wid.z * kp * np / 4u;
    let oc = wid.z * mp * np;
    // This subgroup's sub-block within the block.
    let sr = (sg / 2u) * 4u * S;
    let sc = (sg % 2u) * 4u * S;
    // Never taken (k_p ≥ 16): plain accesses to the buffers the cooperative loads and stores
    // use, so that a host's SPIR-V reflection that does not know those instructions (vulkano's)
    // still lists the bindings and their reads and writes.
    if (kp == 0u) { cp[0] = f32(ah[0].x) + f32(bh[0].x); }
    var acc: array<FC, 16>;
    for (var k0 = 0u; k0 < kp; k0 = k0 + BK) {
        // A rows r0.., columns k0..k0+BK (k_p is a multiple of 16 ≥ BK or the tail is zero-padded
        // by the bound below).
        for (var e = lid; e < BM * BK / 4u; e = e + THREADS) {
            let r = e / (BK / 4u);
            let c = 4u * (e % (BK / 4u));
            var v = vec4<f16>();
            if (r0 + r < mp && k0 + c < kp) { v = ah[oa4 + ((r0 + r) * kp + k0 + c) / 4u]; }
            let w = r * AST + c;
            at[w] = v.x; at[w + 1u] = v.y; at[w + 2u] = v.z; at[w + 3u] = v.w;
        }
        for (var e = lid; e < BK * BM / 4u; e = e + THREADS) {
            let r = e / (BM / 4u);
            let c = 4u * (e % (BM / 4u));
            var v = vec4<f16>();
            if (k0 + r < kp && c0 + c < np) { v = bh[ob4 + ((k0 + r) * np + c0 + c) / 4u]; }
            let w = r * BST + c;
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
    if (r0 + sr < mp && c0 + sc < np) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            for (var j = 0u; j < 4u; j = j + 1u) {
                // Through `let`s: naga 30 does not emit expressions made inside a coopStore call.
                let tile = acc[4u * i + j];
                let o = oc + (r0 + sr + S * i) * np + c0 + sc + S * j;
                coopStoreT(tile, &cp[o], np);
            }
        }
    }
}
