// q, k, v, o, dO are [B, L, Nh, Dh]: offset of token 0 of head bh = b·Nh + h, and the step
// between consecutive tokens of one head.
fn head_offset(bh: u32) -> u32 {
    return ((bh / prm.nh) * prm.l * prm.nh + bh % prm.nh) * prm.dh;
}

fn token_stride() -> u32 {
    return prm.nh * prm.dh;
}
