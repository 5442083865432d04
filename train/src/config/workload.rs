//! A benchmark workload (`benches/*.json`): a model config plus the input it is timed on.

use mvdit_core::ModelConfig;
use mvdit_model::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// A benchmark workload: a model config plus `image_size` and `context_tokens`.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub model: ModelConfig,
    pub image_size: usize,
    pub context_tokens: usize,
}

impl Workload {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::new(format!("{}: cannot read: {e}", path.display())))?;
        let mut v: Value = serde_json::from_str(&text).map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
        let obj = v.as_object_mut().ok_or_else(|| Error::new(format!("{}: expected a JSON object", path.display())))?;
        let mut take = |k: &str| -> Result<usize> {
            obj.remove(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| Error::new(format!("{}: field `{k}` (a positive integer) is missing", path.display())))
        };
        let (image_size, context_tokens) = (take("image_size")?, take("context_tokens")?);
        let model = mvdit_model::checkpoint::parse_config(&v.to_string(), &path.display().to_string())?;
        Ok(Workload { model, image_size, context_tokens })
    }

    /// Forward FLOPs of one sample: every matmul (2·m·n·k) and attention's QKᵀ and PV.
    pub fn forward_flops_per_sample(&self) -> f64 {
        let c = &self.model;
        let p = c.patch_size;
        let li = (self.image_size / p).pow(2) as f64;
        let dc = c.context_dim as f64;
        let d = c.hidden_size as f64;
        let block = self.block_flops_per_sample();
        let patch = (c.in_channels * p * p) as f64;
        let stem = 2.0 * li * patch * d * 2.0 + if c.context_dim != c.hidden_size { 2.0 * self.context_tokens as f64 * dc * d } else { 0.0 };
        c.depth as f64 * block + stem
    }

    /// Forward FLOPs of one block for one sample: Q, K, V, O (4·L·D² each ×2), W13 and W2
    /// (3·L·D·M ×2) and attention's QKᵀ and PV (2·L²·D ×2).
    pub fn block_flops_per_sample(&self) -> f64 {
        let c = &self.model;
        let l = ((self.image_size / c.patch_size).pow(2) + self.context_tokens) as f64;
        let (d, m) = (c.hidden_size as f64, c.mlp_hidden_dim as f64);
        2.0 * l * (4.0 * d * d + 2.0 * d * m + m * d) + 2.0 * 2.0 * l * l * d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_workloads_and_counts_flops() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.json");
        std::fs::write(&p, r#"{"in_channels":1,"patch_size":2,"image_size":4,"hidden_size":8,"depth":2,"num_heads":2,"mlp_hidden_dim":16,"qkv_bias":false,"context_dim":8,"context_tokens":1,"rope_base":10000}"#).unwrap();
        let w = Workload::read(&p).unwrap();
        assert_eq!((w.image_size, w.context_tokens, w.model.depth), (4, 1, 2));
        // L = 4 + 1; block = 2·5·(4·64 + 2·128 + 128) + 4·25·8; stem = 2·4·4·8·2
        let block = 2.0 * 5.0 * (256.0 + 256.0 + 128.0) + 4.0 * 25.0 * 8.0;
        assert_eq!(w.forward_flops_per_sample(), 2.0 * block + 2.0 * 4.0 * 4.0 * 8.0 * 2.0);
        std::fs::write(&p, r#"{"in_channels":1}"#).unwrap();
        assert!(Workload::read(&p).unwrap_err().0.contains("image_size"));
    }
}
