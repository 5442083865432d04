// The MV-Split sum before the norm, recomputed where needed: row `r` of s = x + β(u − Mu) +
// α(Mu − Mx), with Mx, Mu the means of r's segment (image or text tokens of its sample) in
// `means` = [M(x) as [B, 2, D] | M(u) as [B, 2, D]] (M(u) at prm.mu_off).
fn segment_means(r: u32) -> u32 {
    var seg = 0u;
    if (r % prm.l >= prm.s0end) { seg = 1u; }
    return ((r / prm.l) * 2u + seg) * prm.d;
}

fn merged(base: u32, mb: u32, c: u32) -> f32 {
    let mx = means[mb + c];
    let mu = means[prm.mu_off + mb + c];
    return x[base + c] + beta[c] * (u[base + c] - mu) + alpha[c] * (mu - mx);
}
