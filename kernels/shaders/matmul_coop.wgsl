// Cp_z[m_p, n_p] = Ah_z[m_p, k_p] · Bh_z[k_p, n_p] for z = grid z, on the cooperative-matrix
// (tensor-core) units: f16 operands, f32 accumulation. The operands come from `to_f16_pad`
// (dense, row-major, z-major, zero-padded: m_p and n_p multiples of 64, k_p of 16), so no
// access needs a bounds check.
//
// Written over the fragment size S (S×S×S products; the fragment types FA, FB, FC and the
// subgroup width SG are set per kernel, see kernels/src/lib.rs). One workgroup is one subgroup; it
// computes a 4S×4S tile of Cp as 4×4 accumulators; each step of S along k loads four A
// fragments and four B fragments straight from the storage buffers (the caches serve the reuse
// between neighbouring workgroups).
struct P { mp: u32, np: u32, kp: u32, row0: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> ah: array<f16>;
@group(0) @binding(2) var<storage, read> bh: array<f16>;
@group(0) @binding(3) var<storage, read_write> cp: array<f32>;

@compute @workgroup_size(SG)
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
    let r0 = prm.row0 + wid.y * 4u * S;
    let c0 = wid.x * 4u * S;
    let np = prm.np;
    let kp = prm.kp;
    let oa = wid.z * prm.mp * kp;
    let ob = wid.z * kp * np;
    let oc = wid.z * prm.mp * np;
    // Never taken (k_p ≥ 16): plain accesses to the buffers the cooperative loads and stores
    // use, so that a host's SPIR-V reflection that does not know those instructions (vulkano's)
    // still lists the bindings and their reads and writes.
    if (kp == 0u) { cp[0] = f32(ah[0]) + f32(bh[0]); }
    var acc: array<FC, 16>;
    for (var k0 = 0u; k0 < kp; k0 = k0 + S) {
        var fa: array<FA, 4>;
        for (var i = 0u; i < 4u; i = i + 1u) {
            fa[i] = coopLoadT<FA>(&ah[oa + (r0 + S * i) * kp + k0], kp);
        }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let fb = coopLoadT<FB>(&bh[ob + k0 * np + c0 + S * j], np);
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
            let at = oc + (r0 + S * i) * np + c0 + S * j;
            coopStoreT(tile, &cp[at], np);
        }
    }
}
