//! [`Shape`]: the sizes of one attention call and the offsets of a head in its tensors, which
//! the general kernels and the register-blocked ones of `tiled` share.

use crate::matmul::View;

/// Shapes of one call: B, L, Nh, Dh (D = Nh·Dh).
#[derive(Clone, Copy)]
pub struct Shape {
    pub b: usize,
    pub l: usize,
    pub nh: usize,
    pub dh: usize,
}

impl Shape {
    pub(super) fn d(&self) -> usize {
        self.nh * self.dh
    }
    /// Offset of head h of token t in sample bi.
    pub(super) fn at(&self, bi: usize, t: usize, h: usize) -> usize {
        (bi * self.l + t) * self.d() + h * self.dh
    }
    /// Strided [L, Dh] view of one head.
    pub(super) fn head<'a>(&self, x: &'a [f32], bi: usize, h: usize) -> View<'a> {
        let s = self.at(bi, 0, h);
        View { data: &x[s..s + (self.l - 1) * self.d() + self.dh], rs: self.d(), cs: 1 }
    }
}
