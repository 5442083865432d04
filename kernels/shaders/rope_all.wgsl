// Rotate-half RoPE on every token, no normalisation (the text encoder's): x, out: [B, L, Nh, Dh],
// cos, sin: [L, Dh/2]. One invocation per pair (i, i + Dh/2) of one head of one token:
// out_i = x_i·cos + x_{i+h}·sin, out_{i+h} = x_{i+h}·cos − x_i·sin (ops::rope_apply).
struct P { n: u32, l: u32, nh: u32, dh: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> cos_t: array<f32>;
@group(0) @binding(3) var<storage, read> sin_t: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let p = flat_id(wid, nwg, lid);
    if (p >= prm.n) { return; }
    let half = prm.dh / 2u;
    let i = p % half;
    let row = p / half; // (b·L + t)·Nh + h
    let t = (row / prm.nh) % prm.l;
    let base = row * prm.dh;
    let x1 = x[base + i];
    let x2 = x[base + i + half];
    let c = cos_t[t * half + i];
    let s = sin_t[t * half + i];
    out[base + i] = x1 * c + x2 * s;
    out[base + i + half] = x2 * c - x1 * s;
}
