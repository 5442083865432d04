// Group normalisation of channels-last images x: [B, N, C] (N pixels), G groups of cg = C/G
// channels; each (image, group) bg = b·G + g is normalised by the mean and biased variance of its
// N·cg values (ops::group_norm). Five dispatches, by mode:
// 0: partial sums Σ(x − x₀), x₀ the group's first value (a shift that keeps an offset mean from
//    costing precision), one 64-invocation workgroup per (chunk of `chunk` values, bg) (grid
//    x = chunk, y = bg) → part[bg·chunks + chunk];
// 1: one invocation per bg: mean = x₀ + Σ part / (N·cg) → stats[2·bg];
// 2: partial sums Σ(x − mean)², as mode 0 (the centred variance, never E[x²] − E[x]²);
// 3: one invocation per bg: rstd = 1/√(Σ part / (N·cg) + eps) → stats[2·bg + 1];
// 4: one invocation per value: out = (x − mean)·rstd·gamma + beta.
struct P { mode: u32, len: u32, n: u32, c: u32, cg: u32, groups: u32, chunk: u32, chunks: u32, bgs: u32, eps: f32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, 64>;

// Value t (of N·cg, pixel-major) of group bg.
fn value(bg: u32, t: u32) -> f32 {
    let b = bg / prm.groups;
    let g = bg % prm.groups;
    return x[(b * prm.n + t / prm.cg) * prm.c + g * prm.cg + t % prm.cg];
}

// Modes 0 and 2: this workgroup's partial sum of x − x₀ (centred = false) or of (x − mean)².
fn partial(chunk: u32, bg: u32, lid: u32, centred: bool) {
    let total = prm.n * prm.cg;
    let end = min(total, (chunk + 1u) * prm.chunk);
    var shift = value(bg, 0u);
    if (centred) { shift = stats[2u * bg]; }
    var s = 0.0;
    for (var t = chunk * prm.chunk + lid; t < end; t = t + 64u) {
        let v = value(bg, t) - shift;
        if (centred) { s = s + v * v; } else { s = s + v; }
    }
    red[lid] = s;
    for (var w = 32u; w > 0u; w = w / 2u) {
        workgroupBarrier();
        if (lid < w) { red[lid] = red[lid] + red[lid + w]; }
    }
    if (lid == 0u) { part[bg * prm.chunks + chunk] = red[0]; }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if (prm.mode == 0u || prm.mode == 2u) {
        partial(wid.x, wid.y, lid, prm.mode == 2u);
        return;
    }
    let i = flat_id(wid, nwg, lid);
    if (prm.mode == 4u) {
        if (i >= prm.len) { return; }
        let ch = i % prm.c;
        let bg = (i / (prm.n * prm.c)) * prm.groups + ch / prm.cg;
        out[i] = (x[i] - stats[2u * bg]) * stats[2u * bg + 1u] * gamma[ch] + beta[ch];
        return;
    }
    if (i >= prm.bgs) { return; }
    var s = 0.0;
    for (var k = 0u; k < prm.chunks; k = k + 1u) { s = s + part[i * prm.chunks + k]; }
    let count = f32(prm.n * prm.cg);
    if (prm.mode == 1u) {
        stats[2u * i] = value(i, 0u) + s / count;
    } else {
        stats[2u * i + 1u] = 1.0 / sqrt(s / count + prm.eps);
    }
}
