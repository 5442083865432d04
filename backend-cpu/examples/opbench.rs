//! Times single backend ops at a workload's shapes: opbench N D M L [threads [filter]]
//! (filter: only ops whose name contains it)
use mvdit_backend_cpu::Cpu;
use mvdit_core::Backend;
use std::time::Instant;

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).take(5).map(|s| s.parse().unwrap()).collect();
    let filter = std::env::args().nth(6).unwrap_or_default();
    let (n, d, m, l, threads) = (a[0], a[1], a[2], a[3], *a.get(4).unwrap_or(&2));
    let be = Cpu::new(threads);
    let r = |len: usize, s: f32| -> Vec<f32> { (0..len).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * s).collect() };
    let b = n / l;
    let x = be.upload(&r(n * d, 1.0), &[b, l, d]).unwrap();
    let w = be.upload(&r(d * d, 0.05), &[d, d]).unwrap();
    let w13 = be.upload(&r(2 * m * d, 0.05), &[2 * m, d]).unwrap();
    let gv = be.upload(&r(n * 2 * m, 1.0), &[b, l, 2 * m]).unwrap();
    let h = be.upload(&r(n * m, 1.0), &[b, l, m]).unwrap();
    let time = |name: &str, f: &mut dyn FnMut()| {
        if !name.contains(&filter) {
            return;
        }
        f();
        // min over many calls: robust to the preemptions of a shared machine (the median shows
        // how far typical calls are from it)
        let mut t: Vec<f64> = (0..300)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect();
        t.sort_by(f64::total_cmp);
        println!("{name:28} {:9.1} us (min of 300, median {:.1})", t[0] * 1e6, t[150] * 1e6);
    };
    time("linear x W^T (D->D)", &mut || drop(be.linear(&x, &w, None).unwrap()));
    time("linear x W13^T (D->2M)", &mut || drop(be.linear(&x, &w13, None).unwrap()));
    time("linear_backward D->D", &mut || drop(be.linear_backward(&x, &w, &x, true, false).unwrap()));
    time("linear_backward D->2M", &mut || drop(be.linear_backward(&x, &w13, &gv, true, false).unwrap()));
    let qkv = [&w, &w, &w];
    time("linear_multi Q/K/V", &mut || drop(be.linear_multi(&x, &qkv, &[None, None, None]).unwrap()));
    time("linear_multi_backward Q/K/V", &mut || drop(be.linear_multi_backward(&x, &qkv, &[&x, &x, &x], &[false; 3], None).unwrap()));
    time("swiglu", &mut || drop(be.swiglu(&gv).unwrap()));
    time("swiglu_backward", &mut || drop(be.swiglu_backward(&gv, &h).unwrap()));
    let al = be.upload(&r(d, 0.1), &[d]).unwrap();
    time("mvsplit", &mut || drop(be.mvsplit(&x, &x, &al, &al, 1e-5, l - 1).unwrap()));
    let (_, rs) = be.mvsplit(&x, &x, &al, &al, 1e-5, l - 1).unwrap();
    time("mvsplit_backward", &mut || drop(be.mvsplit_backward(&x, &x, &al, &al, &rs, &x, l - 1).unwrap()));
    time("attention (heads of 64)", &mut || drop(be.attention(&x, &x, &x, d / 64).unwrap()));
    let (o, lse) = be.attention(&x, &x, &x, d / 64).unwrap();
    time("attention_backward", &mut || drop(be.attention_backward(&x, &x, &x, &o, &lse, &x, d / 64).unwrap()));
    time("axpby", &mut || drop(be.axpby(1.0, &x, 1.0, &x).unwrap()));
}
