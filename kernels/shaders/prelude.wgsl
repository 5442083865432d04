// Shared by every kernel: 1-D thread index over a 2-D grid of 64-wide workgroups
// (the grid is 2-D so that more than 65535 workgroups can be launched).
fn flat_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}
