//! The op suite's error checks: every op refuses tensors that do not fit.

use mvdit_core::ops::AdamW;
use mvdit_core::{BResult, Backend, BackendError};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn ok<T>(r: BResult<T>) -> BResult<()> {
    r.map(|_| ())
}

/// Every op given tensors that do not fit returns `Err` (a shape error) and does not panic.
pub fn shape_errors_are_err<B: Backend>(be: &B) {
    let t = |shape: &[usize]| be.zeros(shape).unwrap();
    let (x, x2d, w, w1d, b5) = (t(&[2, 3, 8]), t(&[6, 8]), t(&[4, 8]), t(&[8]), t(&[5]));
    let (other, d4) = (t(&[2, 4, 8]), t(&[8]));
    let img = t(&[2, 1, 4, 4]);
    let (cos, sin) = (t(&[2, 2]), t(&[2, 2]));
    let mut failures = Vec::new();
    let mut expect = |what: &str, r: &dyn Fn() -> BResult<()>| match catch_unwind(AssertUnwindSafe(r)) {
        Ok(Err(BackendError::Shape(_))) => {}
        Ok(Err(e)) => failures.push(format!("{what}: expected a shape error, got {e:?}")),
        Ok(Ok(())) => failures.push(format!("{what}: returned Ok")),
        Err(_) => failures.push(format!("{what}: panicked")),
    };
    expect("upload: wrong value count", &|| ok(be.upload(&[1.0; 5], &[2, 3])));
    expect("reshape: element count", &|| ok(be.reshape(t(&[6, 5]), &[7, 5])));
    expect("patchify: 3-D input", &|| ok(be.patchify(&x, 2)));
    expect("patchify: H not divisible by P", &|| ok(be.patchify(&img, 3)));
    expect("patchify: P = 0", &|| ok(be.patchify(&img, 0)));
    expect("patchify_backward: wrong size", &|| ok(be.patchify_backward(&x, [2, 1, 4, 4], 2)));
    expect("unpatchify: wrong size", &|| ok(be.unpatchify(&x, [2, 1, 4, 4], 2)));
    expect("unpatchify_backward: 3-D input", &|| ok(be.unpatchify_backward(&x, 2)));
    expect("concat_tokens: D mismatch", &|| ok(be.concat_tokens(&x, &t(&[2, 3, 4]))));
    expect("concat_tokens: B mismatch", &|| ok(be.concat_tokens(&x, &t(&[1, 3, 8]))));
    expect("concat_tokens: 2-D input", &|| ok(be.concat_tokens(&x2d, &x2d)));
    expect("split_tokens: la > L", &|| ok(be.split_tokens(&x, 4)));
    expect("split_tokens: 2-D input", &|| ok(be.split_tokens(&x2d, 1)));
    expect("linear: K mismatch", &|| ok(be.linear(&x, &t(&[4, 7]), None)));
    expect("linear: 1-D weight", &|| ok(be.linear(&x, &w1d, None)));
    expect("linear: bias size", &|| ok(be.linear(&x, &w, Some(&b5))));
    expect("linear_backward: dy width", &|| ok(be.linear_backward(&x, &w, &t(&[2, 3, 5]), true, true)));
    expect("linear_backward: dy rows", &|| ok(be.linear_backward(&x, &w, &t(&[2, 4, 4]), true, true)));
    expect("linear_multi: bias count", &|| ok(be.linear_multi(&x, &[&w, &w], &[None])));
    expect("linear_multi: K mismatch", &|| ok(be.linear_multi(&x, &[&w, &t(&[4, 7])], &[None, None])));
    expect("linear_multi_backward: dy count", &|| ok(be.linear_multi_backward(&x, &[&w, &w], &[&t(&[2, 3, 4])], &[false, false], None)));
    expect("linear_multi_backward: acc shape", &|| ok(be.linear_multi_backward(&x, &[&w], &[&t(&[2, 3, 4])], &[false], Some(t(&[2, 3, 7])))));
    expect("linear_backward: 1-D weight", &|| ok(be.linear_backward(&x, &w1d, &t(&[2, 3, 8]), true, false)));
    expect("rmsnorm: gain size", &|| ok(be.rmsnorm(&x, Some(&b5), 1e-5)));
    expect("rmsnorm_backward: dy shape", &|| ok(be.rmsnorm_backward(&x, None, &t(&[6]), &other)));
    expect("rmsnorm_backward: rstd size", &|| ok(be.rmsnorm_backward(&x, None, &t(&[5]), &x)));
    expect("rmsnorm_backward: gain size", &|| ok(be.rmsnorm_backward(&x, Some(&b5), &t(&[6]), &x)));
    expect("mvsplit: u shape", &|| ok(be.mvsplit(&x, &other, &d4, &d4, 1e-5, 2)));
    expect("mvsplit: alpha size", &|| ok(be.mvsplit(&x, &x, &b5, &d4, 1e-5, 2)));
    expect("mvsplit: 2-D input", &|| ok(be.mvsplit(&x2d, &x2d, &d4, &d4, 1e-5, 2)));
    expect("mvsplit_backward: dz shape", &|| ok(be.mvsplit_backward(&x, &x, &d4, &d4, &t(&[6]), &other, 2)));
    expect("mvsplit_backward: rstd size", &|| ok(be.mvsplit_backward(&x, &x, &d4, &d4, &t(&[5]), &x, 2)));
    expect("mvsplit_backward: beta size", &|| ok(be.mvsplit_backward(&x, &x, &d4, &b5, &t(&[6]), &x, 2)));
    expect("rope_qknorm: table size", &|| ok(be.rope_qknorm(&x, &t(&[2, 3]), &t(&[2, 3]), 2, 2, 1e-6)));
    expect("rope_qknorm: heads do not divide D", &|| ok(be.rope_qknorm(&x, &cos, &sin, 3, 2, 1e-6)));
    expect("rope_qknorm: Li > L", &|| ok(be.rope_qknorm(&x, &t(&[4, 2]), &t(&[4, 2]), 2, 4, 1e-6)));
    expect("rope_qknorm: 2-D input", &|| ok(be.rope_qknorm(&x2d, &cos, &sin, 2, 2, 1e-6)));
    expect("rope_qknorm_backward: dy shape", &|| ok(be.rope_qknorm_backward(&x, &cos, &sin, &t(&[12]), &other, 2, 2)));
    expect("rope_qknorm_backward: rstd size", &|| ok(be.rope_qknorm_backward(&x, &cos, &sin, &t(&[11]), &x, 2, 2)));
    expect("rope_qknorm_backward: table size", &|| ok(be.rope_qknorm_backward(&x, &t(&[1, 2]), &t(&[1, 2]), &t(&[12]), &x, 2, 2)));
    expect("attention: k shape", &|| ok(be.attention(&x, &other, &x, 2)));
    expect("attention: heads do not divide D", &|| ok(be.attention(&x, &x, &x, 3)));
    expect("attention: zero heads", &|| ok(be.attention(&x, &x, &x, 0)));
    expect("attention: 2-D input", &|| ok(be.attention(&x2d, &x2d, &x2d, 2)));
    expect("attention_backward: v shape", &|| ok(be.attention_backward(&x, &x, &other, &x, &t(&[2, 2, 3]), &x, 2)));
    expect("attention_backward: lse size", &|| ok(be.attention_backward(&x, &x, &x, &x, &t(&[2, 2, 4]), &x, 2)));
    expect("attention_backward: o shape", &|| ok(be.attention_backward(&x, &x, &x, &other, &t(&[2, 2, 3]), &x, 2)));
    expect("swiglu: odd width", &|| ok(be.swiglu(&t(&[2, 3, 7]))));
    expect("swiglu_backward: dy shape", &|| ok(be.swiglu_backward(&x, &t(&[2, 3, 3]))));
    expect("swiglu_backward: dy rows", &|| ok(be.swiglu_backward(&x, &t(&[3, 2, 4]))));
    expect("mse: shape", &|| ok(be.mse(&x, &other)));
    expect("axpby: shape", &|| ok(be.axpby(1.0, &x, 1.0, &other)));
    expect("adamw: moment shape", &|| {
        let (mut p, mut m, mut v) = (t(&[8]), t(&[5]), t(&[8]));
        be.adamw(&AdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }, 1, 1.0, &mut p, &d4, &mut m, &mut v)
    });
    expect("adamw: grad shape", &|| {
        let (mut p, mut m, mut v) = (t(&[8]), t(&[8]), t(&[8]));
        be.adamw(&AdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }, 1, 1.0, &mut p, &b5, &mut m, &mut v)
    });
    expect("gather_rows: index out of range", &|| ok(be.gather_rows(&w, &[0, 4])));
    expect("scatter_add_rows: index count", &|| ok(be.scatter_add_rows(&w, &[0, 1], 6)));
    expect("scatter_add_rows: index out of range", &|| ok(be.scatter_add_rows(&w, &[0, 1, 2, 6], 6)));
    assert!(failures.is_empty(), "{} bad calls did not return a shape error:\n{}", failures.len(), failures.join("\n"));
}
