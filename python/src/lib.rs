//! `mvdit._mvdit`: the library's jobs for Python. The package `mvdit` (python/mvdit/) wraps
//! these in documented functions and classes. Output arrays are the library's own vectors moved
//! into numpy (no copy); input arrays (`noise`, `save`) are read in place and copied once into
//! the library's types.
//!
//! The GIL is released while mvdit computes. Errors: `FileNotFoundError` for a missing file,
//! `ValueError` for a bad option (the message names the command line's flag), `mvdit.Error`
//! for the rest, each with the command line's one-line message; a panic becomes `mvdit.Error`.

mod pyconv;

use pyconv::{err, json_to_py, spec};
use numpy::prelude::*;
use numpy::{PyArray1, PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use mvdit_train::class_sample::{ClassOptions, ClassSampler as Sampler};
use mvdit_train::launch::{train_on, with_overrides, Split};
use mvdit_train::observe::Progress;
use mvdit_train::config::{SampleConfig, SampleRequest};
use mvdit_train::sampler::{Method, SampleOptions};
use mvdit_train::text_to_image::{TextSettings, TextToImage as Pipeline, TextToImageOptions};

pyo3::create_exception!(mvdit, Error, PyException, "An mvdit job failed; the message names the file, tensor or field.");

/// Runs `f` with the GIL released, turning a panic into `mvdit.Error`.
fn compute<T: Send>(py: Python<'_>, f: impl FnOnce() -> mvdit_train::Result<T> + Send) -> PyResult<T> {
    let out = py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    match out {
        Ok(r) => r.map_err(err),
        Err(_) => Err(Error::new_err("internal error (a bug in mvdit, please report it): a panic in the computation")),
    }
}

/// The sampler settings asked for, each absent one from the checkpoint's `defaults`.
#[allow(clippy::too_many_arguments)]
fn sample_options(
    defaults: &SampleConfig,
    steps: Option<usize>,
    cfg: Option<f64>,
    shift: Option<f64>,
    seed: u64,
    heun: bool,
    sampler: Option<&str>,
    cfg_interval: Option<(f64, f64)>,
    cache_threshold: Option<f64>,
) -> PyResult<SampleOptions> {
    let sampler = match (heun, sampler) {
        (true, _) => Some(Method::Heun),
        (false, Some(s)) => Some(s.parse::<Method>().map_err(|e| PyValueError::new_err(format!("--sampler: {e}")))?),
        (false, None) => None,
    };
    let request = SampleRequest { steps, cfg_scale: cfg, shift, sampler, cfg_interval: cfg_interval.map(|(lo, hi)| [lo, hi]), cache_threshold };
    Ok(request.resolve(defaults, seed).map_err(|e| PyValueError::new_err(e.to_string()))?.0)
}

/// A text-to-image pipeline (see `mvdit.TextToImage`).
#[pyclass(frozen, module = "mvdit._mvdit")]
struct TextToImage {
    inner: Pipeline,
}

#[pymethods]
impl TextToImage {
    #[new]
    #[pyo3(signature = (checkpoint, text_encoder, vae, *, config=None, backend="cpu", device=None, threads=0, max_memory=None, weights="auto", ema=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(py: Python<'_>, checkpoint: PathBuf, text_encoder: PathBuf, vae: PathBuf, config: Option<PathBuf>, backend: &str, device: Option<usize>, threads: usize, max_memory: Option<String>, weights: &str, ema: bool) -> PyResult<Self> {
        let spec = spec(backend, device, threads)?;
        let weights = weights.parse().map_err(|e: mvdit_train::Error| PyValueError::new_err(format!("--weights {e}")))?;
        let max_memory = max_memory.map(|m| mvdit_train::plan::parse_size(&m).map_err(|e| PyValueError::new_err(e.context("--max-memory").to_string()))).transpose()?.map(|m| m as usize);
        let inner = compute(py, move || {
            let config = config.as_deref().map(mvdit_train::config::read_model_config).transpose()?;
            Pipeline::open(&checkpoint, &text_encoder, &vae, &TextToImageOptions { backend: spec, config, max_memory, weights, ema })
        })?;
        Ok(TextToImage { inner })
    }

    /// What opening found worth saying.
    fn notes(&self) -> Vec<String> {
        self.inner.notes().to_vec()
    }

    /// The latent shape [C, h, w] of an image of `size` pixels.
    fn latent_shape(&self, size: usize) -> PyResult<(usize, usize, usize)> {
        let [c, h, w] = self.inner.latent_shape(size).map_err(err)?;
        Ok((c, h, w))
    }

    /// Images [N, S, S, 3] uint8, latents [N, C, h, w] float32 and notes.
    #[pyo3(signature = (prompts, *, steps=None, cfg=None, shift=None, size=256, seed=0, heun=false, noise=None, sampler=None, cfg_interval=None, cache_threshold=None))]
    #[allow(clippy::too_many_arguments)]
    fn generate<'py>(
        &self,
        py: Python<'py>,
        prompts: Vec<String>,
        steps: Option<usize>,
        cfg: Option<f64>,
        shift: Option<f64>,
        size: usize,
        seed: u64,
        heun: bool,
        noise: Option<PyReadonlyArrayDyn<'py, f32>>,
        sampler: Option<&str>,
        cfg_interval: Option<(f64, f64)>,
        cache_threshold: Option<f64>,
    ) -> PyResult<(Bound<'py, PyArrayDyn<u8>>, Bound<'py, PyArrayDyn<f32>>, Vec<String>)> {
        if prompts.is_empty() {
            return Err(PyValueError::new_err("no prompt: give at least one"));
        }
        let noise = match &noise {
            Some(a) if !a.is_c_contiguous() => return Err(PyValueError::new_err("noise: a C-contiguous float32 array")),
            Some(a) => Some(a.as_slice().map_err(|e| PyValueError::new_err(format!("noise: {e}")))?.to_vec()),
            None => None,
        };
        let sample = sample_options(self.inner.sample_defaults(), steps, cfg, shift, seed, heun, sampler, cfg_interval, cache_threshold)?;
        let settings = TextSettings { sample, size, noise };
        let inner = &self.inner;
        let out = compute(py, || inner.generate(&prompts, &settings))?;
        let (n, s) = (out.count, out.side);
        let images = PyArray1::from_vec(py, out.rgb()).reshape(vec![n, s, s, 3])?;
        let latents = PyArray1::from_vec(py, out.latents).reshape(out.latent_shape.to_vec())?;
        Ok((images, latents, out.notes))
    }
}

/// A class sampler (see `mvdit.ClassSampler`).
#[pyclass(frozen, module = "mvdit._mvdit")]
struct ClassSampler {
    inner: Sampler,
}

#[pymethods]
impl ClassSampler {
    #[new]
    #[pyo3(signature = (checkpoint, *, vae=None, backend="cpu", device=None, threads=0, ema=true))]
    fn new(py: Python<'_>, checkpoint: PathBuf, vae: Option<PathBuf>, backend: &str, device: Option<usize>, threads: usize, ema: bool) -> PyResult<Self> {
        let spec = spec(backend, device, threads)?;
        let inner = compute(py, move || Sampler::open(&checkpoint, &ClassOptions { backend: spec, ema, vae }))?;
        Ok(ClassSampler { inner })
    }

    #[getter]
    fn class_names(&self) -> Vec<String> {
        self.inner.class_names().to_vec()
    }

    /// Images [N, S, S, 3] uint8 and the label of each.
    #[pyo3(signature = (classes=None, *, count=8, steps=None, cfg=None, shift=None, seed=0, heun=false, sampler=None, cfg_interval=None, cache_threshold=None))]
    #[allow(clippy::too_many_arguments)]
    fn generate<'py>(&self, py: Python<'py>, classes: Option<Vec<u32>>, count: usize, steps: Option<usize>, cfg: Option<f64>, shift: Option<f64>, seed: u64, heun: bool, sampler: Option<&str>, cfg_interval: Option<(f64, f64)>, cache_threshold: Option<f64>) -> PyResult<(Bound<'py, PyArrayDyn<u8>>, Vec<u32>)> {
        if count == 0 {
            return Err(PyValueError::new_err("--count must be at least 1"));
        }
        let opts = sample_options(self.inner.sample_defaults(), steps, cfg, shift, seed, heun, sampler, cfg_interval, cache_threshold)?;
        let (inner, classes) = (&self.inner, classes.unwrap_or_default());
        let out = compute(py, || inner.generate(&classes, count, &opts))?;
        let s = out.side;
        let images = PyArray1::from_vec(py, out.rgb()).reshape(vec![out.labels.len(), s, s, 3])?;
        Ok((images, out.labels))
    }
}

/// Hands each logged record to `on_step`; False (or an exception) stops the run.
struct Hook<'a> {
    on_step: Option<&'a Py<PyAny>>,
    stop: &'a AtomicBool,
    error: &'a Mutex<Option<PyErr>>,
}

impl Progress for Hook<'_> {
    fn record(&mut self, record: &serde_json::Value) {
        let Some(cb) = self.on_step else { return };
        let res = Python::attach(|py| -> PyResult<bool> {
            let ret = cb.call1(py, (json_to_py(py, record)?,))?;
            let ret = ret.bind(py);
            Ok(ret.is_none() || ret.is_truthy()?)
        });
        match res {
            Ok(true) => {}
            Ok(false) => self.stop.store(true, Ordering::SeqCst),
            Err(e) => {
                self.error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                self.stop.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// `resume`: True, False, or "auto" (whether `out` holds a checkpoint).
fn resume_mode(resume: &Bound<'_, PyAny>, out: &std::path::Path) -> PyResult<bool> {
    if let Ok(b) = resume.extract::<bool>() {
        return Ok(b);
    }
    match resume.extract::<String>().as_deref() {
        Ok("auto") => mvdit_train::run_dir::resume_auto(out, &mvdit_train::dist::Dist::single()).map_err(err),
        _ => Err(PyValueError::new_err(format!("resume: True, False or \"auto\", not {resume}"))),
    }
}

/// Trains in a worker thread while this (the main) thread watches for signals: Ctrl-C raises
/// the stop flag, the run ends after its step with a checkpoint, then `KeyboardInterrupt`.
#[pyfunction]
#[pyo3(signature = (config, out, *, data=None, steps=None, resume=None, init=None, on_step=None, backend="cpu", device=None, devices=None, micro_batches=1, threads=0))]
#[allow(clippy::too_many_arguments)]
fn train<'py>(
    py: Python<'py>,
    config: &str,
    out: PathBuf,
    data: Option<PathBuf>,
    steps: Option<u64>,
    resume: Option<&Bound<'py, PyAny>>,
    init: Option<PathBuf>,
    on_step: Option<Py<PyAny>>,
    backend: &str,
    device: Option<usize>,
    devices: Option<Vec<usize>>,
    micro_batches: usize,
    threads: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let spec = spec(backend, device, threads)?;
    let cfg = mvdit_train::config::load(config).and_then(|c| with_overrides(c, data, steps, init)).map_err(err)?;
    let split = Split { devices: devices.unwrap_or_default(), micro_batches };
    let resume = match resume {
        None => false,
        Some(r) => resume_mode(r, &out)?,
    };
    let stop = AtomicBool::new(false);
    let error = Mutex::new(None);
    let (joined, interrupt) = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let mut hook = Hook { on_step: on_step.as_ref(), stop: &stop, error: &error };
            train_on(&spec, &split, &out, cfg, resume, &stop, &mut hook)
        });
        let mut interrupt = None;
        while !worker.is_finished() {
            py.detach(|| std::thread::sleep(Duration::from_millis(20)));
            if interrupt.is_none() {
                if let Err(e) = py.check_signals() {
                    interrupt = Some(e);
                    stop.store(true, Ordering::SeqCst);
                }
            }
        }
        (worker.join(), interrupt)
    });
    let summary = match joined {
        Ok(r) => r.map_err(err)?,
        Err(_) => return Err(Error::new_err("internal error (a bug in mvdit, please report it): a panic in training")),
    };
    if let Some(e) = interrupt {
        // KeyboardInterrupt from Ctrl-C, or whatever another signal handler raised.
        return Err(e);
    }
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let d = PyDict::new(py);
    d.set_item("median_step_seconds", summary.median_step_seconds())?;
    d.set_item("step", summary.step)?;
    d.set_item("stopped", summary.interrupted)?;
    d.set_item("stopped_after_mms", summary.stopped_after_mms)?;
    d.set_item("last_loss", summary.last_loss)?;
    d.set_item("eval_losses", summary.eval_losses)?;
    d.set_item("checkpoint", summary.checkpoint)?;
    Ok(d)
}

/// `mvdit prepare`: an image folder to training shards.
#[pyfunction]
#[pyo3(signature = (images, vae, out, *, text_encoder=None, captions=None, size=256, flip=false, shard_size=2048, dtype="bf16", seed=0, backend="cpu", device=None, threads=0))]
#[allow(clippy::too_many_arguments)]
fn prepare(py: Python<'_>, images: PathBuf, vae: PathBuf, out: PathBuf, text_encoder: Option<PathBuf>, captions: Option<PathBuf>, size: usize, flip: bool, shard_size: usize, dtype: &str, seed: u64, backend: &str, device: Option<usize>, threads: usize) -> PyResult<()> {
    let spec = spec(backend, device, threads)?;
    let dtype = pyconv::dtype(dtype, "--dtype")?;
    let o = mvdit_train::prepare::PrepareOptions { images, vae, text_encoder, captions, size, flip, shard_size, dtype, seed, out };
    compute(py, || mvdit_train::with_backend!(spec, |be| mvdit_train::prepare::prepare(&be, &o, &mut mvdit_train::observe::Quiet)))
}

/// `mvdit convert`: a `.pt` state dict to a safetensors checkpoint.
#[pyfunction]
#[pyo3(signature = (input, config, out, *, dtype=None))]
fn convert<'py>(py: Python<'py>, input: PathBuf, config: PathBuf, out: PathBuf, dtype: Option<&str>) -> PyResult<Bound<'py, PyDict>> {
    let dtype = dtype.map(|d| pyconv::dtype(d, "--dtype")).transpose()?;
    let done = compute(py, || mvdit_train::convert::convert(&input, &config, &out, dtype))?;
    let d = PyDict::new(py);
    d.set_item("tensors", done.tensors)?;
    d.set_item("bytes", done.bytes)?;
    d.set_item("dropped_ones", done.dropped_ones)?;
    Ok(d)
}

/// Every tensor of a safetensors file, a sharded set or a `.pt` state dict: floats as float32,
/// integers as int64.
#[pyfunction]
fn load<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let w = compute(py, || mvdit_model::WeightFile::open(&path))?;
    let d = PyDict::new(py);
    for name in w.names().map(String::from).collect::<Vec<_>>() {
        if w.dtype(&name).is_some() {
            let shape: Vec<Option<usize>> = w.shape(&name).map_err(err)?.iter().map(|&s| Some(s)).collect();
            let t = compute(py, || w.get(&name, &shape))?;
            d.set_item(&name, PyArray1::from_vec(py, t.data).reshape(t.shape)?)?;
        } else {
            let (shape, v) = w.ints(&name).map_err(err)?;
            d.set_item(&name, PyArray1::from_vec(py, v).reshape(shape)?)?;
        }
    }
    Ok(d)
}

/// Writes float32 tensors (and string metadata) as one safetensors file, atomically.
#[pyfunction]
#[pyo3(signature = (path, tensors, metadata=None))]
fn save(py: Python<'_>, path: PathBuf, tensors: HashMap<String, PyReadonlyArrayDyn<'_, f32>>, metadata: Option<HashMap<String, String>>) -> PyResult<()> {
    let mut f = mvdit_model::TensorFile::default();
    for (name, a) in &tensors {
        if !a.is_c_contiguous() {
            return Err(PyValueError::new_err(format!("tensor `{name}`: a C-contiguous float32 array")));
        }
        let data = a.as_slice().map_err(|e| PyValueError::new_err(format!("tensor `{name}`: {e}")))?.to_vec();
        f.insert(name.clone(), mvdit_model::HostTensor::new(a.shape().to_vec(), data));
    }
    f.metadata = metadata.unwrap_or_default();
    compute(py, || f.write(&path))
}

/// The command line in this process, for `python -m mvdit ...` and the `mvdit` script only
/// (`mvdit train` takes over Ctrl-C and exits the process with 130 when interrupted);
/// returns the exit status.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> PyResult<i32> {
    match py.detach(|| std::panic::catch_unwind(|| mvdit_cli::main_with(argv))) {
        Ok(code) => Ok(code),
        Err(_) => Err(Error::new_err("internal error (a bug in mvdit, please report it): a panic in the command line")),
    }
}

#[pymodule(name = "_mvdit")]
fn mvdit_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("Error", m.py().get_type::<Error>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<TextToImage>()?;
    m.add_class::<ClassSampler>()?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(prepare, m)?)?;
    m.add_function(wrap_pyfunction!(convert, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(save, m)?)?;
    m.add_function(wrap_pyfunction!(main, m)?)?;
    Ok(())
}
