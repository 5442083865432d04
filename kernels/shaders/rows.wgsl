// Row gather / scatter-add for class embeddings (indices checked on the host).
// mode 0 (gather): out[i, c] = src[idx[i], c], n = cnt·e.
// mode 1 (scatter-add): out[v, c] = Σ_{i: idx[i] = v} src[i, c] in index order, n = vocab·e.
struct P { n: u32, e: u32, cnt: u32, mode: u32 }
@group(0) @binding(0) var<uniform> prm: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= prm.n) { return; }
    let c = i % prm.e;
    let r = i / prm.e;
    if (prm.mode == 0u) {
        out[i] = src[idx[r] * prm.e + c];
    } else {
        var s = 0.0;
        for (var j = 0u; j < prm.cnt; j = j + 1u) {
            if (idx[j] == r) { s = s + src[j * prm.e + c]; }
        }
        out[i] = s;
    }
}
