// im2col for a channels-last convolution (x: [B, H, W, Ci], weights [Co, Kh, Kw, Ci]): row p of
// col holds the receptive field of output pixel start + p (pixels counted over [B, Ho, Wo]) in
// the weights' order (ky, kx, c), zeros where it reads past the image (the padding), so that
// y[pixels] = col · wᵀ. One invocation per value of col: n = rows·k, k = Kh·Kw·Ci.
struct P { n: u32, k: u32, start: u32, h: u32, w: u32, ci: u32, ho: u32, wo: u32, kw: u32, stride: u32, top: u32, left: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> col: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let kk = i % prm.k;
    let p = prm.start + i / prm.k;
    let c = kk % prm.ci;
    let kx = (kk / prm.ci) % prm.kw;
    let ky = kk / (prm.ci * prm.kw);
    let ox = p % prm.wo;
    let oy = (p / prm.wo) % prm.ho;
    let b = p / (prm.wo * prm.ho);
    // Padded coordinates; the image covers [top, top + H) × [left, left + W) of them.
    let py = oy * prm.stride + ky;
    let px = ox * prm.stride + kx;
    var v = 0.0;
    if (py >= prm.top && py - prm.top < prm.h && px >= prm.left && px - prm.left < prm.w) {
        v = x[((b * prm.h + py - prm.top) * prm.w + px - prm.left) * prm.ci + c];
    }
    col[i] = v;
}
