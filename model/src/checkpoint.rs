//! Checkpoints in the released model's layout: parameters under their released names (the patch
//! convolution as [D, C, P, P]), the config as JSON in metadata key `config`. Training state
//! (EMA, optimizer moments, counters) rides along under the prefixes in [`STATE_PREFIXES`].

use crate::error::{Error, Result};
use crate::tensorfile::{HostTensor, TensorFile};
use mvdit_core::params::is_constant_ones_buffer;
use mvdit_core::{Layout, ModelConfig};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Tensor-name prefixes of training state stored beside the parameters.
pub const STATE_PREFIXES: [&str; 4] = ["cond.", "ema.", "optim.", "train."];

#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub cfg: ModelConfig,
    /// Parameter values in [`Layout`] order.
    pub params: Vec<Vec<f32>>,
    /// Training state tensors (names with a [`STATE_PREFIXES`] prefix).
    pub state: BTreeMap<String, HostTensor>,
    /// Metadata other than `config`.
    pub metadata: HashMap<String, String>,
}

/// The fields of a benchmark workload (`benches/*.json`, `configs/released-1000.json`) that
/// describe its input, not the weights: a model config may carry them, and they are dropped.
pub const WORKLOAD_FIELDS: [&str; 2] = ["image_size", "context_tokens"];

/// Parses a config JSON string, naming where it came from on error. A workload's
/// [`WORKLOAD_FIELDS`] are accepted and ignored.
pub fn parse_config(json: &str, origin: &str) -> Result<ModelConfig> {
    let stripped = match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(mut o)) if WORKLOAD_FIELDS.iter().any(|k| o.contains_key(*k)) => {
            WORKLOAD_FIELDS.iter().for_each(|k| drop(o.remove(*k)));
            Some(serde_json::Value::Object(o).to_string())
        }
        _ => None,
    };
    let cfg: ModelConfig = serde_json::from_str(stripped.as_deref().unwrap_or(json)).map_err(|e| Error::new(format!("{origin}: invalid model config: {}", crate::suggest::with_suggestion(&e.to_string()))))?;
    cfg.validate().map_err(|e| Error::new(format!("{origin}: {e}")))?;
    Ok(cfg)
}

/// Reads a checkpoint; `cfg_override` replaces (or supplies) the metadata config. A PyTorch
/// `.pt` state dict (a zip archive, recognised by its first bytes) is read through
/// [`PtFile`](crate::pt::PtFile); it has no config, so it needs `cfg_override`. A directory
/// (a sharded training checkpoint, a Hugging Face folder) is read through its index.
pub fn load_checkpoint(path: &Path, cfg_override: Option<&ModelConfig>) -> Result<Checkpoint> {
    let file = if path.is_dir() {
        read_dir_whole(path)?
    } else if crate::pt::is_pt_file(path) {
        crate::pt::PtFile::open(path)?.to_tensor_file()?
    } else {
        TensorFile::read(path)?
    };
    from_tensor_file(file, cfg_override).map_err(|e| e.context(path.display()))
}

/// Every tensor and the metadata of the sharded set in `dir`, in memory, checksums verified.
fn read_dir_whole(dir: &Path) -> Result<TensorFile> {
    let w = crate::WeightFile::open_dir(dir)?;
    let mut file = TensorFile { metadata: w.metadata().clone(), ..Default::default() };
    file.metadata.remove(crate::tensorfile::CHECKSUM_KEY);
    let mut sums = crate::weights::Sums::default();
    for name in w.names() {
        let shape: Vec<Option<usize>> = w.shape(name)?.iter().map(|&d| Some(d)).collect();
        file.insert(name, w.get_summed(name, &shape, &mut sums)?);
    }
    w.verify_with(sums)?;
    Ok(file)
}

/// A checkpoint from the tensors and metadata of a file: the config from `cfg_override` or the
/// metadata, every parameter of its layout, training state under [`STATE_PREFIXES`].
pub fn from_tensor_file(mut file: TensorFile, cfg_override: Option<&ModelConfig>) -> Result<Checkpoint> {
    let cfg = match (cfg_override, file.metadata.remove("config")) {
        (Some(c), _) => c.clone(),
        (None, Some(json)) => parse_config(&json, "metadata key `config`")?,
        (None, None) => return Err(Error::new("no `config` in the metadata; pass --config C.json")),
    };
    let layout = Layout::new(&cfg);
    let mut params = Vec::with_capacity(layout.specs.len());
    for spec in &layout.specs {
        let t = file.tensors.remove(&spec.name).ok_or_else(|| Error::new(format!("missing tensor `{}` (shape {:?})", spec.name, spec.shape)))?;
        if t.shape != spec.shape {
            return Err(Error::new(format!("tensor `{}` has shape {:?}, the config needs {:?}", spec.name, t.shape, spec.shape)));
        }
        params.push(t.data);
    }
    let mut state = BTreeMap::new();
    for (name, t) in std::mem::take(&mut file.tensors) {
        if STATE_PREFIXES.iter().any(|p| name.starts_with(p)) {
            state.insert(name, t);
        } else if is_constant_ones_buffer(&name, &cfg) {
            if t.data.iter().any(|&v| v != 1.0) {
                return Err(Error::new(format!("tensor `{name}` is a fixed gain in this config and must be all ones")));
            }
        } else {
            return Err(Error::new(format!("unknown tensor `{name}` for this config")));
        }
    }
    Ok(Checkpoint { cfg, params, state, metadata: file.metadata })
}

pub fn to_tensor_file(ck: &Checkpoint) -> Result<TensorFile> {
    let layout = Layout::new(&ck.cfg);
    let mut file = TensorFile { metadata: ck.metadata.clone(), ..Default::default() };
    let json = serde_json::to_string(&ck.cfg).map_err(|e| Error::new(format!("cannot serialise config: {e}")))?;
    file.metadata.insert("config".into(), json);
    if ck.params.len() != layout.specs.len() {
        return Err(Error::new(format!("checkpoint has {} parameters, config needs {}", ck.params.len(), layout.specs.len())));
    }
    for (spec, v) in layout.specs.iter().zip(&ck.params) {
        if v.len() != spec.numel() {
            return Err(Error::new(format!("parameter `{}`: {} values for shape {:?}", spec.name, v.len(), spec.shape)));
        }
        file.insert(spec.name.clone(), HostTensor::new(spec.shape.clone(), v.clone()));
    }
    for (name, t) in &ck.state {
        file.insert(name.clone(), t.clone());
    }
    Ok(file)
}

/// Writes atomically (temp file, fsync, rename).
pub fn save_checkpoint(path: &Path, ck: &Checkpoint) -> Result<()> {
    to_tensor_file(ck)?.write(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_file_is_a_model_config() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/released-1000.json");
        let cfg = parse_config(&std::fs::read_to_string(path).unwrap(), "released-1000.json").unwrap();
        assert_eq!((cfg.depth, cfg.hidden_size, cfg.num_heads, cfg.context_dim, cfg.qkv_bias), (1000, 1024, 8, 1024, false));
        assert_eq!(Layout::new(&cfg).numel(), 13_635_847_296, "the released parameter count");
        let e = parse_config(r#"{"in_channels": 1, "image_size": 8, "hiden_size": 4}"#, "c.json").unwrap_err().0;
        assert!(e.contains("c.json: invalid model config: unknown field `hiden_size`") && e.contains("did you mean `hidden_size`"), "{e}");
    }
}
