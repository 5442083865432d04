// Query rows q0..q0+lq of masked attention between the token layout [B, L, Hq, Dh] and a
// head-major block [B, Hq, lq, Dh] (the rows of the Hq/Hkv query heads that share a KV head are
// then consecutive: one GEMM per (sample, KV head) in attention_masked). One invocation per
// value of the block, n = B·Hq·lq·Dh. mode 0: block ← tokens (gather Q); mode 1: tokens ← block
// (scatter O).
struct P { n: u32, l: u32, lq: u32, q0: u32, hq: u32, dh: u32, mode: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let e = i % prm.dh;
    let t = i / prm.dh;
    let qi = t % prm.lq;
    let bh = t / prm.lq;
    let h = bh % prm.hq;
    let b = bh / prm.hq;
    let tok = ((b * prm.l + prm.q0 + qi) * prm.hq + h) * prm.dh + e;
    if (prm.mode == 0u) { dst[i] = src[tok]; } else { dst[tok] = src[i]; }
}
