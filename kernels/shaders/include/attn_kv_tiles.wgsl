// Tiles of TK keys (and their values) in workgroup memory, for the tiled forward and dQ kernels
// (Dh ≤ 128).
const TK: u32 = 16u;
var<workgroup> ks: array<f32, 2048>;
var<workgroup> vs: array<f32, 2048>;

// Stages keys j0..j0+nk of the head at `head0` into ks, vs ([key][e]); the barriers keep the
// workgroup from overwriting a tile still being read, or reading one half written.
fn stage_kv(j0: u32, nk: u32, head0: u32, lid: u32) {
    workgroupBarrier();
    for (var t = lid; t < nk * prm.dh; t = t + 64u) {
        let g = head0 + (j0 + t / prm.dh) * token_stride() + t % prm.dh;
        ks[t] = k[g];
        vs[t] = v[g];
    }
    workgroupBarrier();
}
