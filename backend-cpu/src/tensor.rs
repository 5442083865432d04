//! Host tensors: a flat f32 buffer with its shape.

#[derive(Clone, Debug, PartialEq)]
pub struct CpuTensor {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
}

impl CpuTensor {
    pub fn new(data: Vec<f32>, shape: &[usize]) -> Self {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        CpuTensor { data, shape: shape.to_vec() }
    }

    pub fn zeros(shape: &[usize]) -> Self {
        CpuTensor { data: vec![0.0; shape.iter().product()], shape: shape.to_vec() }
    }

    /// Last dimension (feature size of a token tensor).
    pub fn last(&self) -> usize {
        *self.shape.last().unwrap_or(&1)
    }

    /// Rows when the last dimension is features.
    pub fn rows(&self) -> usize {
        self.data.len() / self.last().max(1)
    }

    /// [B, L, D] of a token tensor; a shape error for any other rank.
    pub fn bld(&self) -> mvdit_core::BResult<(usize, usize, usize)> {
        match self.shape.as_slice() {
            [b, l, d] => Ok((*b, *l, *d)),
            s => Err(mvdit_core::BackendError::Shape(format!("token tensor must be [B, L, D], got {s:?}"))),
        }
    }
}
