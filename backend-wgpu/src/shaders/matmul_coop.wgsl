// Cp_z[m_p, n_p] = Ah_z[m_p, k_p] · Bh_z[k_p, n_p] for z = grid z, on the cooperative-matrix
// (tensor-core) units: f16 operands, f32 accumulation. The operands come from `to_f16_pad`
// (dense, row-major, z-major, zero-padded: m_p and n_p multiples of 64, k_p of 16), so no
// access needs a bounds check.
//
// One workgroup is one subgroup of 32 invocations (the op layer picks this kernel only on
// devices whose subgroup size is 32 and that list 16×16×16 f16·f16+f32 subgroup matrices). It
// computes a 64×64 tile of Cp as 4×4 accumulators of 16×16; each step of 16 along k loads four
// A fragments and four B fragments straight from the storage buffers (the caches serve the
// reuse between neighbouring workgroups).
struct P { mp: u32, np: u32, kp: u32, row0: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> ah: array<f16>;
@group(0) @binding(2) var<storage, read> bh: array<f16>;
@group(0) @binding(3) var<storage, read_write> cp: array<f32>;

@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
    let r0 = prm.row0 + wid.y * 64u;
    let c0 = wid.x * 64u;
    let np = prm.np;
    let kp = prm.kp;
    let oa = wid.z * prm.mp * kp;
    let ob = wid.z * kp * np;
    let oc = wid.z * prm.mp * np;
    var acc: array<coop_mat16x16<f32, C>, 16>;
    for (var k0 = 0u; k0 < kp; k0 = k0 + 16u) {
        var fa: array<coop_mat16x16<f16, A>, 4>;
        for (var i = 0u; i < 4u; i = i + 1u) {
            fa[i] = coopLoadT<coop_mat16x16<f16, A>>(&ah[oa + (r0 + 16u * i) * kp + k0], kp);
        }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let fb = coopLoadT<coop_mat16x16<f16, B>>(&bh[ob + k0 * np + c0 + 16u * j], np);
            for (var i = 0u; i < 4u; i = i + 1u) {
                acc[4u * i + j] = coopMultiplyAdd(fa[i], fb, acc[4u * i + j]);
            }
        }
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            // Operands and index through `let`s: naga 30 does not emit expressions made inside
            // a coopStore call.
            let tile = acc[4u * i + j];
            let at = oc + (r0 + 16u * i) * np + c0 + 16u * j;
            coopStoreT(tile, &cp[at], np);
        }
    }
}
