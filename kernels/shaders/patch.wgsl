// Patchify / unpatchify and their backward passes: one permutation kernel.
// Rows [B, Li, C*P*P] with features (c, py, px) or, when channel_last, (py, px, c);
// image [B, C, H, W]. to_image = 0: dst = rows gathered from the image; 1: dst = image from rows.
struct P { n: u32, c: u32, h: u32, w: u32, p: u32, gw: u32, li: u32, channel_last: u32, to_image: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn col_of(ch: u32, py: u32, px: u32) -> u32 {
    if (prm.channel_last != 0u) { return (py * prm.p + px) * prm.c + ch; }
    return (ch * prm.p + py) * prm.p + px;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let pp = prm.p * prm.p;
    let cpp = prm.c * pp;
    if (prm.to_image == 0u) {
        let col = i % cpp;
        let row = i / cpp;
        let tok = row % prm.li;
        let b = row / prm.li;
        let gy = tok / prm.gw;
        let gx = tok % prm.gw;
        var ch: u32; var py: u32; var px: u32;
        if (prm.channel_last != 0u) {
            ch = col % prm.c;
            let q = col / prm.c;
            py = q / prm.p;
            px = q % prm.p;
        } else {
            ch = col / pp;
            let r = col % pp;
            py = r / prm.p;
            px = r % prm.p;
        }
        let img = ((b * prm.c + ch) * prm.h + gy * prm.p + py) * prm.w + gx * prm.p + px;
        dst[i] = src[img];
    } else {
        let x = i % prm.w;
        let t = i / prm.w;
        let y = t % prm.h;
        let t2 = t / prm.h;
        let ch = t2 % prm.c;
        let b = t2 / prm.c;
        let row = b * prm.li + (y / prm.p) * prm.gw + x / prm.p;
        dst[i] = src[row * cpp + col_of(ch, y % prm.p, x % prm.p)];
    }
}
