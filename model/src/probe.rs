//! Looking inside the blocks during a forward/backward pass (diagnostics, probes).
//!
//! A [`Probe`] says which tensors ([`Tap`]) of which blocks it wants; the model downloads only
//! those and hands them over. Passing no probe costs nothing on the hot path.

/// A tensor inside block i. Token tensors are [B, L, D] (image tokens first), FFN hidden [B, L, M].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tap {
    /// The block input X (the trunk before the attention merge).
    BlockIn,
    /// Queries and keys after RoPE and QK-norm (rebuild the attention map from them).
    QNorm,
    KNorm,
    /// The values V [B, L, Nh·Dh] the attention map mixes (head h's map acts on head h's slice).
    Value,
    /// Attention output before W_O: the input y of the attention writer.
    AttnOut,
    /// The attention branch output F = y W_Oᵀ.
    AttnBranch,
    /// The trunk between the two merges.
    Mid,
    /// SwiGLU output: the input y of the FFN writer W2.
    FfnHidden,
    /// The FFN branch output F = h W2ᵀ (+ bias).
    FfnBranch,
    /// The block output.
    BlockOut,
    /// Backward: d loss / d AttnBranch (δ of the attention writer).
    GradAttnBranch,
    /// Backward: d loss / d FfnBranch (δ of the FFN writer).
    GradFfnBranch,
}

impl Tap {
    pub const FORWARD: [Tap; 10] =
        [Tap::BlockIn, Tap::QNorm, Tap::KNorm, Tap::Value, Tap::AttnOut, Tap::AttnBranch, Tap::Mid, Tap::FfnHidden, Tap::FfnBranch, Tap::BlockOut];
    pub const BACKWARD: [Tap; 2] = [Tap::GradAttnBranch, Tap::GradFfnBranch];
}

/// Receives the tensors it asks for, as host f32 values with their shape.
pub trait Probe {
    /// Whether to record `tap` of block `block` (called once per block and tap).
    fn wants(&self, block: usize, tap: Tap) -> bool;
    fn record(&mut self, block: usize, tap: Tap, shape: &[usize], values: Vec<f32>);
}

/// A probe that keeps every tensor it is asked to keep, keyed by (block, tap).
#[derive(Default)]
pub struct Recorder {
    pub blocks: Vec<usize>,
    pub taps: Vec<Tap>,
    pub values: std::collections::BTreeMap<(usize, Tap), (Vec<usize>, Vec<f32>)>,
}

impl Recorder {
    pub fn new(blocks: Vec<usize>, taps: Vec<Tap>) -> Self {
        Recorder { blocks, taps, values: Default::default() }
    }

    pub fn get(&self, block: usize, tap: Tap) -> Option<&(Vec<usize>, Vec<f32>)> {
        self.values.get(&(block, tap))
    }
}

impl Probe for Recorder {
    fn wants(&self, block: usize, tap: Tap) -> bool {
        self.blocks.contains(&block) && self.taps.contains(&tap)
    }
    fn record(&mut self, block: usize, tap: Tap, shape: &[usize], values: Vec<f32>) {
        self.values.insert((block, tap), (shape.to_vec(), values));
    }
}

/// Reborrows an optional probe for one call (a probe is handed down through several calls).
pub fn reborrow<'a>(p: &'a mut Option<&mut dyn Probe>) -> Option<&'a mut dyn Probe> {
    match p {
        Some(p) => Some(&mut **p),
        None => None,
    }
}
