// The attention kernels' shared interface: shapes, the softmax scale, and q, k, v
// ([B, L, Nh, Dh], read only) at bindings 1–3.
struct P { rows: u32, l: u32, nh: u32, dh: u32, scale: f32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
