// Tiled C[m, n] = A[m, k] · B[k, n] (+ bias[n]) for GPUs with fast workgroup memory, for each
// z of a batch (grid z; one GEMM when nh = 1 and the batch offsets are 0). A and B are f32 in
// memory; the `_h` build rounds each value to f16 as it is staged (f16 operands, no conversion
// pass), the plain build takes it as it is; accumulation is always f32.
// A(i, kk) = a[oa + i*a_rs + kk*a_cs], B(kk, j) = b[ob + kk*b_rs + j*b_cs],
// C(i, j) = c[oc + i*c_rs + j]: strided, so transposed operands cost nothing extra. The batch
// runs over (sample, head) pairs z = zb·nh + zh, operand X at ox = zb·x_sb + zh·x_sh, so
// attention reads Q, K, V in place from [B, L, Nh, Dh].
//
// A 16×16 workgroup computes a 64×64 tile of C, each invocation a 4×4 block (rows ly + 16i,
// columns lx + 16j, so that neighbouring invocations store neighbouring columns). K advances in
// steps of 16: the workgroup stages a 64×16 slice of A and a 16×64 slice of B in workgroup
// memory (k-major, so the inner loop reads consecutive addresses), each invocation loading 4
// values of each. The load mapping follows the operand's unit stride so global reads coalesce.
// flags: 1 = bias.
#include matmul_params

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> As: array<f32, 1024>; // [TK][TM]
var<workgroup> Bs: array<f32, 1024>; // [TK][TN]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let o = batch_offsets(wid.z);
    let tile_r = prm.row0 + wid.y * TM;
    let tile_c = wid.x * TN;
    let lx = lid3.x;
    let ly = lid3.y;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < prm.k; k0 = k0 + TK) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let sa = stage_a(li + 256u * i, TM, TK, o.x, tile_r, k0);
            As[sa.kk * TM + sa.i] = sa.v;
            let sb = stage_b(li + 256u * i, TN, TK, o.y, tile_c, k0);
            Bs[sb.kk * TN + sb.i] = sb.v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            let ao = kk * TM + ly;
            let bo = kk * TN + lx;
            let bq = vec4<f32>(Bs[bo], Bs[bo + 16u], Bs[bo + 32u], Bs[bo + 48u]);
            acc0 = acc0 + As[ao] * bq;
            acc1 = acc1 + As[ao + 16u] * bq;
            acc2 = acc2 + As[ao + 32u] * bq;
            acc3 = acc3 + As[ao + 48u] * bq;
        }
        workgroupBarrier();
    }
    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = tile_r + ly + 16u * i;
        if (row >= prm.m) { break; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = tile_c + lx + 16u * j;
            if (col < prm.n) {
                var v = acc[i][j];
                if ((prm.flags & 1u) != 0u) { v = v + bias[col]; }
                c[o.z + row * prm.c_rs + col] = v;
            }
        }
    }
}
