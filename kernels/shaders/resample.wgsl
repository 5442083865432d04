// Resolution changes of channels-last images, one invocation per output value (a gather).
// x: [B, H, W, Cx] with (h, w) its pixels; r the factor; c the channels named per mode:
// mode 0, nearest upsampling: c = Cx, out [B, r·H, r·W, c], each pixel repeated over an r×r block;
// mode 1, pixel unshuffle: c = Cx, out [B, H/r, W/r, c·r²], channel ch·r² + i·r + j holding pixel
//   (r·oy + i, r·ox + j) of channel ch (PyTorch's order);
// mode 2, pixel shuffle (its inverse): Cx = c·r², out [B, r·H, r·W, c].
struct P { n: u32, h: u32, w: u32, c: u32, r: u32, mode: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let r = prm.r;
    let rr = r * r;
    if (prm.mode == 1u) {
        let co = i % (prm.c * rr);
        let t = i / (prm.c * rr);
        let wo = prm.w / r;
        let ho = prm.h / r;
        let ox = t % wo;
        let oy = (t / wo) % ho;
        let b = t / (wo * ho);
        let ch = co / rr;
        let ii = (co % rr) / r;
        let jj = co % r;
        out[i] = x[((b * prm.h + oy * r + ii) * prm.w + ox * r + jj) * prm.c + ch];
        return;
    }
    // Modes 0 and 2: the output is [B, r·H, r·W, c].
    let ch = i % prm.c;
    let t = i / prm.c;
    let ox = t % (prm.w * r);
    let oy = (t / (prm.w * r)) % (prm.h * r);
    let b = t / (prm.w * r * prm.h * r);
    let px = (b * prm.h + oy / r) * prm.w + ox / r;
    if (prm.mode == 0u) {
        out[i] = x[px * prm.c + ch];
    } else {
        out[i] = x[px * prm.c * rr + (ch * r + oy % r) * r + ox % r];
    }
}
