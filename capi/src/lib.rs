//! The C ABI of mvdit: open a text-to-image pipeline or a class sampler, generate into buffers
//! the caller owns, train with a callback, read the last error; `include/mvdit.h` is made from
//! this file by cbindgen (`capi/tests/header.rs` fails when it is stale).
//!
//! Every function returns a status (MvditStatus) or a handle (NULL on failure); the
//! message of the last failure on the calling thread is mvdit_last_error(). No panic
//! crosses the boundary: one is caught and returned as `MVDIT_PANIC` with its message.
//!
//! Thread safety: a handle is used by one thread at a time (calls on one handle from two
//! threads at once must be serialised by the caller); different handles may be used from
//! different threads at once. The last error is per thread.

use mvdit_backend_wgpu::Precision;
use mvdit_train::backends::{BackendSpec, Weights};
use mvdit_train::class_sample::{ClassOptions, ClassSampler};
use mvdit_train::launch::{train_on, with_overrides, Split};
use mvdit_train::observe::Progress;
use mvdit_train::sampler::{Method, SampleOptions};
use mvdit_train::text_to_image::{TextSettings, TextToImage, TextToImageOptions};
use mvdit_train::{Error, Result};
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// What a call returns.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MvditStatus {
    MVDIT_OK = 0,
    /// Bad input or a failed job: mvdit_last_error() says which file, field or flag.
    MVDIT_ERROR = 1,
    /// A bug in mvdit, caught at the boundary; mvdit_last_error() has its message.
    MVDIT_PANIC = 2,
}

/// The backend a handle or a run uses. Start from mvdit_backend_default().
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MvditBackend {
    /// "cpu" (NULL also means cpu), "wgpu" or "vulkan".
    pub kind: *const c_char,
    /// CPU threads (0 = all cores).
    pub threads: usize,
    /// GPU device index (`mvdit devices`); negative: the most capable one.
    pub device: i64,
    /// wgpu, vulkan: matmul operands in f16 (accumulation stays f32).
    pub f16: bool,
}

/// How a text-to-image pipeline is opened. Start from mvdit_text_options_default() and set
/// what differs (so that no field is left uninitialised).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MvditTextOptions {
    pub backend: MvditBackend,
    /// A model config JSON file for checkpoints without a `config` metadata key, or NULL.
    pub config: *const c_char,
    /// Bytes of DiT weights held at once (above, the model streams from its file); 0: 80% of
    /// a GPU's memory, else the host's available memory.
    pub max_memory: u64,
    /// "auto" (NULL also means auto), "f32", "bf16" or "f16": the dtype the weights are held in.
    pub weights: *const c_char,
    /// A training checkpoint's EMA weights where it has them.
    pub ema: bool,
}

/// How one batch is sampled. Start from mvdit_sample_settings_default().
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MvditSampleSettings {
    pub steps: usize,
    /// Classifier-free guidance scale (text: guidance only above 1).
    pub cfg: f64,
    /// Time shift a of t·a/(1+(a−1)t).
    pub shift: f64,
    pub seed: u64,
    /// Heun's method instead of Euler (the same as sampler "heun").
    pub heun: bool,
    /// Image side in pixels (text to image only).
    pub size: usize,
    /// The sampler: "euler", "heun", "dpm2m", "dpm3m", "ab2", "ab3" or "sde"; NULL: Euler
    /// (or Heun with `heun`).
    pub sampler: *const c_char,
    /// Guidance only for t in [cfg_interval[0], cfg_interval[1]]; {0, 0}: at every step.
    pub cfg_interval: [f64; 2],
    /// Step caching: a block stage's update is reused while its input moved less than this
    /// (relative RMS) since it was computed; 0: off (every block computed, exact).
    pub cache_threshold: f64,
}

/// How a training run starts. Start from mvdit_train_options_default().
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MvditTrainOptions {
    pub backend: MvditBackend,
    /// A folder of images (one sub-folder per class) or a shard set of `mvdit prepare`, or NULL
    /// (the config's data).
    pub data: *const c_char,
    /// Total steps; 0: the config's.
    pub steps: u64,
    /// Continue from the latest checkpoint in the run directory.
    pub resume: bool,
    /// Start from this checkpoint's model weights, or NULL.
    pub init: *const c_char,
}

/// Called after every record a run logs (its metrics.jsonl line, as JSON text valid during the
/// call) with the caller's pointer; returning false stops the run after this step with a
/// checkpoint, as Ctrl-C does. The run's other messages (skipped steps, the MMS detector) go
/// to stderr.
pub type MvditStepCallback = Option<extern "C" fn(record_json: *const c_char, user: *mut c_void) -> bool>;

/// A text-to-image pipeline (opaque).
pub struct MvditTextToImage(TextToImage);

/// A class sampler (opaque).
pub struct MvditClassSampler(ClassSampler);

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `f`, turning an error or a panic into a status and the thread's last error.
fn guard(f: impl FnOnce() -> Result<()>) -> MvditStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_error("");
            MvditStatus::MVDIT_OK
        }
        Ok(Err(e)) => {
            set_error(&e.to_string());
            MvditStatus::MVDIT_ERROR
        }
        Err(panic) => {
            let msg = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default();
            set_error(&format!("internal error (a bug in mvdit, please report it): {msg}"));
            MvditStatus::MVDIT_PANIC
        }
    }
}

/// A handle from `f`, or NULL with the thread's last error set.
fn open_handle<T>(f: impl FnOnce() -> Result<T>) -> *mut T {
    let mut out = None;
    let status = guard(|| {
        out = Some(f()?);
        Ok(())
    });
    match (status, out) {
        (MvditStatus::MVDIT_OK, Some(v)) => Box::into_raw(Box::new(v)),
        _ => std::ptr::null_mut(),
    }
}

/// A C string argument; `what` names it in the error.
unsafe fn text(p: *const c_char, what: &str) -> Result<Option<String>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller passes a NUL-terminated string or NULL.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map(|s| Some(s.to_string())).map_err(|_| Error::new(format!("{what}: not UTF-8")))
}

unsafe fn path(p: *const c_char, what: &str) -> Result<PathBuf> {
    unsafe { text(p, what) }?.map(PathBuf::from).ok_or_else(|| Error::new(format!("{what}: NULL")))
}

unsafe fn spec(b: &MvditBackend) -> Result<BackendSpec> {
    let kind = unsafe { text(b.kind, "backend.kind") }?.unwrap_or_else(|| "cpu".into()).parse()?;
    let precision = if b.f16 { Precision::F16 } else { Precision::F32 };
    let spec = BackendSpec { kind, threads: b.threads, device: usize::try_from(b.device).ok(), precision, ..BackendSpec::default() };
    Ok(spec)
}

fn sample_options(s: &MvditSampleSettings) -> Result<SampleOptions> {
    if s.steps == 0 {
        return Err(Error::new("settings.steps must be at least 1"));
    }
    // SAFETY: the caller passes a NUL-terminated string or NULL (the header says).
    let method = match (s.heun, unsafe { text(s.sampler, "settings.sampler") }?) {
        (true, _) => Method::Heun,
        (false, Some(name)) => name.parse().map_err(|e: String| Error::new(format!("settings.sampler: {e}")))?,
        (false, None) => Method::Euler,
    };
    let cfg_interval = match s.cfg_interval {
        [0.0, 0.0] => None,
        i => {
            mvdit_train::config::check_cfg_interval(i).map_err(|e| Error::new(format!("settings.cfg_interval: {e}")))?;
            Some(i)
        }
    };
    if !(s.cache_threshold >= 0.0 && s.cache_threshold.is_finite()) {
        return Err(Error::new(format!("settings.cache_threshold must be 0 (off) or positive, got {}", s.cache_threshold)));
    }
    Ok(SampleOptions { steps: s.steps, cfg_scale: s.cfg, shift: s.shift, seed: s.seed, method, cfg_interval, cache_threshold: s.cache_threshold })
}

/// `len` values from `p` (an empty slice for len 0).
unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T]> {
    match (p.is_null(), len) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(Error::new(format!("{what}: NULL"))),
        // SAFETY: the caller passes `len` readable values.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(p, len) }),
    }
}

/// Copies `src` into the caller's buffer of `len` values, refusing a buffer of another size.
unsafe fn fill<T: Copy>(dst: *mut T, len: usize, src: &[T], what: &str) -> Result<()> {
    check_len(dst, len, src.len(), what)?;
    if dst.is_null() {
        return Ok(());
    }
    // SAFETY: the caller passes `len` writable values.
    unsafe { std::slice::from_raw_parts_mut(dst, len) }.copy_from_slice(src);
    Ok(())
}

/// The product of `dims`, or an error naming `what` when it overflows.
fn product(dims: &[usize], what: &str) -> Result<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| Error::new(format!("{what}: too large")))
}

/// (image bytes, latent floats) of `prompts` images of `size` pixels.
fn text_sizes(p: &TextToImage, prompts: usize, size: usize) -> Result<(usize, usize)> {
    let [c, h, w] = p.latent_shape(size)?;
    Ok((product(&[prompts, size, size, 3], "images")?, product(&[prompts, c, h, w], "latents")?))
}

/// Refuses a non-NULL buffer whose length is not `want` (before any work is done).
fn check_len<T>(buf: *const T, len: usize, want: usize, what: &str) -> Result<()> {
    match buf.is_null() || len == want {
        true => Ok(()),
        false => Err(Error::new(format!("{what}: a buffer of {len} values for {want} (see the _sizes function)"))),
    }
}

/// The defaults: the CPU with all cores.
#[no_mangle]
pub extern "C" fn mvdit_backend_default() -> MvditBackend {
    MvditBackend { kind: std::ptr::null(), threads: 0, device: -1, f16: false }
}

/// The release's `sample.py`: 35 Euler steps, guidance 2, shift 4, seed 0, 256 pixels.
#[no_mangle]
pub extern "C" fn mvdit_sample_settings_default() -> MvditSampleSettings {
    MvditSampleSettings { steps: 35, cfg: 2.0, shift: 4.0, seed: 0, heun: false, size: 256, sampler: std::ptr::null(), cfg_interval: [0.0, 0.0], cache_threshold: 0.0 }
}

/// The defaults: the config's data and steps, a fresh run, on the CPU.
#[no_mangle]
pub extern "C" fn mvdit_train_options_default() -> MvditTrainOptions {
    MvditTrainOptions { backend: mvdit_backend_default(), data: std::ptr::null(), steps: 0, resume: false, init: std::ptr::null() }
}

/// The defaults: CPU, weights as stored, EMA weights, the default memory budget.
#[no_mangle]
pub extern "C" fn mvdit_text_options_default() -> MvditTextOptions {
    MvditTextOptions { backend: mvdit_backend_default(), config: std::ptr::null(), max_memory: 0, weights: std::ptr::null(), ema: true }
}

/// The message of the last failed call on this thread ("" after a success); valid until the
/// next call on this thread.
#[no_mangle]
pub extern "C" fn mvdit_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// mvdit's version, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn mvdit_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Opens a DiT checkpoint (file or sharded directory), a Qwen3 text-encoder directory and a
/// FLUX.2 autoencoder file; `options` NULL: mvdit_text_options_default(). NULL on failure.
///
/// # Safety
/// The strings are NUL-terminated; `options` is NULL or points to an options struct.
#[no_mangle]
pub unsafe extern "C" fn mvdit_text_to_image_open(checkpoint: *const c_char, text_encoder: *const c_char, vae: *const c_char, options: *const MvditTextOptions) -> *mut MvditTextToImage {
    open_handle(|| {
        // SAFETY: as the function's contract says.
        let o = if options.is_null() { mvdit_text_options_default() } else { unsafe { *options } };
        let config = match unsafe { text(o.config, "options.config") }? {
            Some(p) => Some(mvdit_train::config::read_model_config(p.as_ref())?),
            None => None,
        };
        let weights: Weights = unsafe { text(o.weights, "options.weights") }?.as_deref().unwrap_or("auto").parse()?;
        let max_memory = (o.max_memory > 0).then_some(o.max_memory as usize);
        let opts = TextToImageOptions { backend: unsafe { spec(&o.backend) }?, config, max_memory, weights, ema: o.ema };
        let (ckpt, te, vae) = unsafe { (path(checkpoint, "checkpoint")?, path(text_encoder, "text_encoder")?, path(vae, "vae")?) };
        Ok(MvditTextToImage(TextToImage::open(&ckpt, &te, &vae, &opts)?))
    })
}

/// The buffer sizes of `prompts` images of `size` pixels: bytes of the images [N, S, S, 3] and
/// floats of the latents [N, C, S/f, S/f] (also the size of a `noise` buffer).
///
/// # Safety
/// `p` is a handle from mvdit_text_to_image_open(); the outputs are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mvdit_text_to_image_sizes(p: *const MvditTextToImage, prompts: usize, size: usize, image_bytes: *mut usize, latent_floats: *mut usize) -> MvditStatus {
    guard(|| {
        // SAFETY: as the function's contract says.
        let p = unsafe { p.as_ref() }.ok_or_else(|| Error::new("pipeline: NULL"))?;
        let (images, latents) = text_sizes(&p.0, prompts, size)?;
        unsafe {
            fill(image_bytes, 1, &[images], "image_bytes")?;
            fill(latent_floats, 1, &[latents], "latent_floats")?;
        }
        Ok(())
    })
}

/// One image per prompt into `images` ([N, S, S, 3] bytes, `images_len` of them, or NULL) and
/// the final latents into `latents` (or NULL); `noise` (NULL: from `settings.seed`) holds the
/// initial latents [N, C, S/f, S/f] (only its length can be checked here). Buffer lengths must
/// equal mvdit_text_to_image_sizes()'s; a wrong one is refused before any work.
///
/// # Safety
/// `p` is a handle; `prompts` holds `n` NUL-terminated strings; each buffer is NULL or holds
/// its length in values.
#[no_mangle]
pub unsafe extern "C" fn mvdit_text_to_image_generate(
    p: *const MvditTextToImage,
    prompts: *const *const c_char,
    n: usize,
    settings: *const MvditSampleSettings,
    noise: *const f32,
    noise_len: usize,
    images: *mut u8,
    images_len: usize,
    latents: *mut f32,
    latents_len: usize,
) -> MvditStatus {
    guard(|| {
        // SAFETY: as the function's contract says.
        let p = unsafe { p.as_ref() }.ok_or_else(|| Error::new("pipeline: NULL"))?;
        let s = if settings.is_null() { mvdit_sample_settings_default() } else { unsafe { *settings } };
        let list = unsafe { slice(prompts, n, "prompts") }?;
        let prompts = list.iter().enumerate().map(|(i, &t)| unsafe { text(t, &format!("prompts[{i}]")) }?.ok_or_else(|| Error::new(format!("prompts[{i}]: NULL")))).collect::<Result<Vec<_>>>()?;
        let (image_bytes, latent_floats) = text_sizes(&p.0, prompts.len(), s.size)?;
        check_len(images, images_len, image_bytes, "images")?;
        check_len(latents, latents_len, latent_floats, "latents")?;
        check_len(noise, noise_len, latent_floats, "noise")?;
        let noise = (!noise.is_null()).then(|| unsafe { slice(noise, noise_len, "noise") }.map(|v| v.to_vec())).transpose()?;
        let out = p.0.generate(&prompts, &TextSettings { sample: sample_options(&s)?, size: s.size, noise })?;
        unsafe {
            fill(images, images_len, &out.rgb(), "images")?;
            fill(latents, latents_len, &out.latents, "latents")?;
        }
        Ok(())
    })
}

/// Frees a pipeline (NULL is ignored).
///
/// # Safety
/// `p` is NULL or a handle not yet freed.
#[no_mangle]
pub unsafe extern "C" fn mvdit_text_to_image_free(p: *mut MvditTextToImage) {
    if !p.is_null() {
        // SAFETY: a handle from Box::into_raw, freed once.
        drop(catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(p) }))));
    }
}

/// Opens a class-conditional training checkpoint; `vae` (or NULL) decodes a model of latents.
/// NULL on failure.
///
/// # Safety
/// The strings are NUL-terminated (`vae` may be NULL); `backend` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn mvdit_class_sampler_open(checkpoint: *const c_char, vae: *const c_char, backend: *const MvditBackend, ema: bool) -> *mut MvditClassSampler {
    open_handle(|| {
        // SAFETY: as the function's contract says.
        let b = if backend.is_null() { mvdit_backend_default() } else { unsafe { *backend } };
        let vae = unsafe { text(vae, "vae") }?.map(PathBuf::from);
        let ckpt = unsafe { path(checkpoint, "checkpoint") }?;
        Ok(MvditClassSampler(ClassSampler::open(&ckpt, &ClassOptions { backend: unsafe { spec(&b) }?, ema, vae })?))
    })
}

/// The number of classes, and the image side in pixels.
///
/// # Safety
/// `p` is a handle; the outputs are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mvdit_class_sampler_shape(p: *const MvditClassSampler, classes: *mut usize, side: *mut usize) -> MvditStatus {
    guard(|| {
        // SAFETY: as the function's contract says.
        let p = unsafe { p.as_ref() }.ok_or_else(|| Error::new("sampler: NULL"))?;
        unsafe {
            fill(classes, 1, &[p.0.class_names().len()], "classes")?;
            fill(side, 1, &[p.0.image_side()], "side")?;
        }
        Ok(())
    })
}

/// `count` images of each of the `n` classes (every class when `n` is 0) into `images`
/// ([N, S, S, 3] bytes, N = classes × count), sampled as `settings` says (`size` unused).
///
/// # Safety
/// `p` is a handle; `classes` holds `n` values; `images` holds `images_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mvdit_class_sampler_generate(p: *const MvditClassSampler, classes: *const u32, n: usize, count: usize, settings: *const MvditSampleSettings, images: *mut u8, images_len: usize) -> MvditStatus {
    guard(|| {
        // SAFETY: as the function's contract says.
        let p = unsafe { p.as_ref() }.ok_or_else(|| Error::new("sampler: NULL"))?;
        let s = if settings.is_null() { MvditSampleSettings { steps: 25, ..mvdit_sample_settings_default() } } else { unsafe { *settings } };
        let classes = unsafe { slice(classes, n, "classes") }?;
        let kinds = if classes.is_empty() { p.0.class_names().len() } else { classes.len() };
        let side = p.0.image_side();
        check_len(images, images_len, product(&[kinds, count, side, side, 3], "images")?, "images")?;
        let out = p.0.generate(classes, count, &sample_options(&s)?)?;
        unsafe { fill(images, images_len, &out.rgb(), "images") }
    })
}

/// Frees a sampler (NULL is ignored).
///
/// # Safety
/// `p` is NULL or a handle not yet freed.
#[no_mangle]
pub unsafe extern "C" fn mvdit_class_sampler_free(p: *mut MvditClassSampler) {
    if !p.is_null() {
        // SAFETY: a handle from Box::into_raw, freed once.
        drop(catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(p) }))));
    }
}

/// Hands each logged record to the C callback; a false return raises the stop flag.
struct Callback<'a> {
    f: MvditStepCallback,
    user: *mut c_void,
    stop: &'a AtomicBool,
}

impl Progress for Callback<'_> {
    fn record(&mut self, record: &serde_json::Value) {
        if let Some(f) = self.f {
            let json = CString::new(record.to_string()).unwrap_or_default();
            if !f(json.as_ptr(), self.user) {
                self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }
}

/// Trains `config` (a TOML/JSON file, or a preset: digits, deep1000, tiny) into the run
/// directory `out` on the calling thread; `on_step` (or NULL) hears every logged record.
/// Returns when the run ends, is stopped by the callback (a checkpoint written), or fails.
///
/// # Safety
/// The strings are NUL-terminated; `options` is NULL or valid; `on_step` is NULL or callable
/// with `user`.
#[no_mangle]
pub unsafe extern "C" fn mvdit_train(config: *const c_char, out: *const c_char, options: *const MvditTrainOptions, on_step: MvditStepCallback, user: *mut c_void) -> MvditStatus {
    guard(|| {
        // SAFETY: as the function's contract says.
        let o = if options.is_null() { mvdit_train_options_default() } else { unsafe { *options } };
        let name = unsafe { text(config, "config") }?.ok_or_else(|| Error::new("config: NULL"))?;
        let out = unsafe { path(out, "out") }?;
        let data = unsafe { text(o.data, "options.data") }?.map(PathBuf::from);
        let init = unsafe { text(o.init, "options.init") }?.map(PathBuf::from);
        let cfg = with_overrides(mvdit_train::config::load(&name)?, data, (o.steps > 0).then_some(o.steps), init)?;
        let stop = AtomicBool::new(false);
        let mut hook = Callback { f: on_step, user, stop: &stop };
        train_on(&unsafe { spec(&o.backend) }?, &Split::default(), &out, cfg, o.resume, &stop, &mut hook)?;
        Ok(())
    })
}
