//! Per-shape matmul kernel choices, found by timing the candidates on the device
//! (`mvdit tune`) and handed back from a cache on later runs.
//!
//! A product is known by its [`GemmKey`] (m, n, k, batch count, f16 operands); the device plan
//! ([`crate::MatmulPlan`]) says which kernel families exist at all, and a choice installed for
//! a key ([`GpuBackend::set_matmul_choice`]) picks one of them ([`MatmulChoice`]) for that
//! shape. Shapes without a choice keep the plan's rule. While recording
//! ([`GpuBackend::record_gemms`]) every product's key is noted, so one training step lists the
//! shapes to tune.

use crate::gpu::{Coop, GpuDevice};
use crate::GpuBackend;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// One product shape: C_z[m, n] = A_z[m, k] · B_z[k, n] for z < `batch`, operands in f16 or f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GemmKey {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub f16: bool,
}

/// A kernel for one product shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulChoice {
    /// `matmul_tiled` (`_h` with f16 operands): 64×64 tiles of C.
    Tiled64,
    /// `matmul_tiled128` (`_h` with f16 operands): 128×128 tiles.
    Tiled128,
    /// `matmul_coop_ws`: cooperative matrices, operands staged in workgroup memory (f16 only).
    CoopStaged,
    /// `matmul_coop`: cooperative matrices loaded from storage (f16 only).
    CoopDirect,
}

impl MatmulChoice {
    pub const ALL: [MatmulChoice; 4] = [MatmulChoice::Tiled64, MatmulChoice::Tiled128, MatmulChoice::CoopStaged, MatmulChoice::CoopDirect];

    /// The name the tune cache and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            MatmulChoice::Tiled64 => "tiled64",
            MatmulChoice::Tiled128 => "tiled128",
            MatmulChoice::CoopStaged => "coop-staged",
            MatmulChoice::CoopDirect => "coop-direct",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The cooperative-matrix kernel this choice asks for (of the device's fragment size).
    pub(crate) fn coop(self, fragment: u32) -> Option<Coop> {
        match self {
            MatmulChoice::CoopStaged => Some(Coop { fragment, staged: true }),
            MatmulChoice::CoopDirect => Some(Coop { fragment, staged: false }),
            _ => None,
        }
    }
}

/// The installed choices and, while recording, the shapes seen.
#[derive(Default)]
pub(crate) struct Tuning {
    choices: Mutex<HashMap<GemmKey, MatmulChoice>>,
    seen: Mutex<Option<BTreeSet<GemmKey>>>,
}

impl Tuning {
    /// The choice for `key`, noting the key while recording.
    pub(crate) fn choice(&self, key: GemmKey) -> Option<MatmulChoice> {
        if let Some(seen) = self.seen.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            seen.insert(key);
        }
        self.choices.lock().unwrap_or_else(|p| p.into_inner()).get(&key).copied()
    }

    /// Installs `choice` for `key` (`None`: removes it); returns the one it replaces.
    pub(crate) fn put(&self, key: GemmKey, choice: Option<MatmulChoice>) -> Option<MatmulChoice> {
        let mut map = self.choices.lock().unwrap_or_else(|p| p.into_inner());
        match choice {
            Some(c) => map.insert(key, c),
            None => map.remove(&key),
        }
    }
}

impl<D: GpuDevice> GpuBackend<D> {
    /// The kernels that can run products of shape `key` on this device: the tiled kernels
    /// where the plan tiles products (always with f16 operands), cooperative matrices where
    /// the device has them (f16). Empty where products take the register-blocked kernels (CPU
    /// adapters in f32): nothing to choose.
    pub fn matmul_candidates(&self, key: GemmKey) -> Vec<MatmulChoice> {
        let plan = self.ctx.matmul_plan();
        let mut out = vec![];
        if plan.tiled || (key.f16 && plan.f16) {
            out.extend([MatmulChoice::Tiled64, MatmulChoice::Tiled128]);
        }
        if key.f16 && plan.coop.is_some() {
            out.extend([MatmulChoice::CoopStaged, MatmulChoice::CoopDirect]);
        }
        out
    }

    /// Products of shape `key` take `choice` from now on (`None`: the plan's rule again). A
    /// choice that is not among [`Self::matmul_candidates`] is ignored.
    pub fn set_matmul_choice(&self, key: GemmKey, choice: Option<MatmulChoice>) {
        self.tuning.put(key, choice.filter(|c| self.matmul_candidates(key).contains(c)));
    }

    /// Starts (`true`) or stops noting the shape of every product; stopping returns the shapes
    /// seen since the start, sorted.
    pub fn record_gemms(&self, on: bool) -> Vec<GemmKey> {
        let mut seen = self.tuning.seen.lock().unwrap_or_else(|p| p.into_inner());
        let was = std::mem::replace(&mut *seen, on.then(BTreeSet::new));
        was.map(|s| s.into_iter().collect()).unwrap_or_default()
    }

    /// Whether this backend's products have f16 operands (the f16 flag of the keys it records).
    pub fn gemm_f16(&self) -> bool {
        self.ctx.matmul_plan().f16
    }

}
