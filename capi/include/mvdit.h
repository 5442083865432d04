/* mvdit: text to image, class sampling and training of MV-Split DiTs, from C.
 *
 * Link with -lmvdit (libmvdit.so or libmvdit.a from `cargo build --release -p mvdit-capi`).
 * Every call returns an MvditStatus or a handle (NULL on failure); mvdit_last_error() is the
 * message of the last failure on the calling thread. No panic crosses this boundary.
 *
 * Thread safety: a handle is used by one thread at a time; different handles may be used from
 * different threads at once; the last error is per thread.
 */

#ifndef MVDIT_H
#define MVDIT_H

/* Made by cbindgen from capi/src/lib.rs: do not edit (MVDIT_BLESS=1 cargo test -p mvdit-capi --test header). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 What a call returns.
 */
typedef enum MvditStatus {
  MVDIT_OK = 0,
  /*
   Bad input or a failed job: mvdit_last_error() says which file, field or flag.
   */
  MVDIT_ERROR = 1,
  /*
   A bug in mvdit, caught at the boundary; mvdit_last_error() has its message.
   */
  MVDIT_PANIC = 2,
} MvditStatus;

/*
 A class sampler (opaque).
 */
typedef struct MvditClassSampler MvditClassSampler;

/*
 A text-to-image pipeline (opaque).
 */
typedef struct MvditTextToImage MvditTextToImage;

/*
 The backend a handle or a run uses. Start from mvdit_backend_default().
 */
typedef struct MvditBackend {
  /*
   "cpu" (NULL also means cpu), "wgpu" or "vulkan".
   */
  const char *kind;
  /*
   CPU threads (0 = all cores).
   */
  size_t threads;
  /*
   GPU device index (`mvdit devices`); negative: the most capable one.
   */
  int64_t device;
  /*
   wgpu, vulkan: matmul operands in f16 (accumulation stays f32).
   */
  bool f16;
} MvditBackend;

/*
 How one batch is sampled. Start from mvdit_sample_settings_default().
 */
typedef struct MvditSampleSettings {
  size_t steps;
  /*
   Classifier-free guidance scale (text: guidance only above 1).
   */
  double cfg;
  /*
   Time shift a of t·a/(1+(a−1)t).
   */
  double shift;
  uint64_t seed;
  /*
   Heun's method instead of Euler (the same as sampler "heun").
   */
  bool heun;
  /*
   Image side in pixels (text to image only).
   */
  size_t size;
  /*
   The sampler: "euler", "heun", "dpm2m", "dpm3m", "ab2", "ab3" or "sde"; NULL: Euler
   (or Heun with `heun`).
   */
  const char *sampler;
  /*
   Guidance only for t in [cfg_interval[0], cfg_interval[1]]; {0, 0}: at every step.
   */
  double cfg_interval[2];
  /*
   Step caching: a block stage's update is reused while its input moved less than this
   (relative RMS) since it was computed; 0: off (every block computed, exact).
   */
  double cache_threshold;
} MvditSampleSettings;

/*
 How a training run starts. Start from mvdit_train_options_default().
 */
typedef struct MvditTrainOptions {
  struct MvditBackend backend;
  /*
   A folder of images (one sub-folder per class) or a shard set of `mvdit prepare`, or NULL
   (the config's data).
   */
  const char *data;
  /*
   Total steps; 0: the config's.
   */
  uint64_t steps;
  /*
   Continue from the latest checkpoint in the run directory.
   */
  bool resume;
  /*
   Start from this checkpoint's model weights, or NULL.
   */
  const char *init;
} MvditTrainOptions;

/*
 How a text-to-image pipeline is opened. Start from mvdit_text_options_default() and set
 what differs (so that no field is left uninitialised).
 */
typedef struct MvditTextOptions {
  struct MvditBackend backend;
  /*
   A model config JSON file for checkpoints without a `config` metadata key, or NULL.
   */
  const char *config;
  /*
   Bytes of DiT weights held at once (above, the model streams from its file); 0: 80% of
   a GPU's memory, else the host's available memory.
   */
  uint64_t max_memory;
  /*
   "auto" (NULL also means auto), "f32", "bf16" or "f16": the dtype the weights are held in.
   */
  const char *weights;
  /*
   A training checkpoint's EMA weights where it has them.
   */
  bool ema;
} MvditTextOptions;

/*
 Called after every record a run logs (its metrics.jsonl line, as JSON text valid during the
 call) with the caller's pointer; returning false stops the run after this step with a
 checkpoint, as Ctrl-C does. The run's other messages (skipped steps, the MMS detector) go
 to stderr.
 */
typedef bool (*MvditStepCallback)(const char *record_json, void *user);

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/*
 The defaults: the CPU with all cores.
 */
struct MvditBackend mvdit_backend_default(void);

/*
 The release's `sample.py`: 35 Euler steps, guidance 2, shift 4, seed 0, 256 pixels.
 */
struct MvditSampleSettings mvdit_sample_settings_default(void);

/*
 The defaults: the config's data and steps, a fresh run, on the CPU.
 */
struct MvditTrainOptions mvdit_train_options_default(void);

/*
 The defaults: CPU, weights as stored, EMA weights, the default memory budget.
 */
struct MvditTextOptions mvdit_text_options_default(void);

/*
 The message of the last failed call on this thread ("" after a success); valid until the
 next call on this thread.
 */
const char *mvdit_last_error(void);

/*
 mvdit's version, e.g. "0.1.0".
 */
const char *mvdit_version(void);

/*
 Opens a DiT checkpoint (file or sharded directory), a Qwen3 text-encoder directory and a
 FLUX.2 autoencoder file; `options` NULL: mvdit_text_options_default(). NULL on failure.

 # Safety
 The strings are NUL-terminated; `options` is NULL or points to an options struct.
 */
struct MvditTextToImage *mvdit_text_to_image_open(const char *checkpoint,
                                                  const char *text_encoder,
                                                  const char *vae,
                                                  const struct MvditTextOptions *options);

/*
 The buffer sizes of `prompts` images of `size` pixels: bytes of the images [N, S, S, 3] and
 floats of the latents [N, C, S/f, S/f] (also the size of a `noise` buffer).

 # Safety
 `p` is a handle from mvdit_text_to_image_open(); the outputs are NULL or writable.
 */
enum MvditStatus mvdit_text_to_image_sizes(const struct MvditTextToImage *p,
                                           size_t prompts,
                                           size_t size,
                                           size_t *image_bytes,
                                           size_t *latent_floats);

/*
 One image per prompt into `images` ([N, S, S, 3] bytes, `images_len` of them, or NULL) and
 the final latents into `latents` (or NULL); `noise` (NULL: from `settings.seed`) holds the
 initial latents [N, C, S/f, S/f] (only its length can be checked here). Buffer lengths must
 equal mvdit_text_to_image_sizes()'s; a wrong one is refused before any work.

 # Safety
 `p` is a handle; `prompts` holds `n` NUL-terminated strings; each buffer is NULL or holds
 its length in values.
 */
enum MvditStatus mvdit_text_to_image_generate(const struct MvditTextToImage *p,
                                              const char *const *prompts,
                                              size_t n,
                                              const struct MvditSampleSettings *settings,
                                              const float *noise,
                                              size_t noise_len,
                                              uint8_t *images,
                                              size_t images_len,
                                              float *latents,
                                              size_t latents_len);

/*
 Frees a pipeline (NULL is ignored).

 # Safety
 `p` is NULL or a handle not yet freed.
 */
void mvdit_text_to_image_free(struct MvditTextToImage *p);

/*
 Opens a class-conditional training checkpoint; `vae` (or NULL) decodes a model of latents.
 NULL on failure.

 # Safety
 The strings are NUL-terminated (`vae` may be NULL); `backend` is NULL or valid.
 */
struct MvditClassSampler *mvdit_class_sampler_open(const char *checkpoint,
                                                   const char *vae,
                                                   const struct MvditBackend *backend,
                                                   bool ema);

/*
 The number of classes, and the image side in pixels.

 # Safety
 `p` is a handle; the outputs are NULL or writable.
 */
enum MvditStatus mvdit_class_sampler_shape(const struct MvditClassSampler *p,
                                           size_t *classes,
                                           size_t *side);

/*
 `count` images of each of the `n` classes (every class when `n` is 0) into `images`
 ([N, S, S, 3] bytes, N = classes × count), sampled as `settings` says (`size` unused).

 # Safety
 `p` is a handle; `classes` holds `n` values; `images` holds `images_len` bytes.
 */
enum MvditStatus mvdit_class_sampler_generate(const struct MvditClassSampler *p,
                                              const uint32_t *classes,
                                              size_t n,
                                              size_t count,
                                              const struct MvditSampleSettings *settings,
                                              uint8_t *images,
                                              size_t images_len);

/*
 Frees a sampler (NULL is ignored).

 # Safety
 `p` is NULL or a handle not yet freed.
 */
void mvdit_class_sampler_free(struct MvditClassSampler *p);

/*
 Trains `config` (a TOML/JSON file, or a preset: digits, deep1000, tiny) into the run
 directory `out` on the calling thread; `on_step` (or NULL) hears every logged record.
 Returns when the run ends, is stopped by the callback (a checkpoint written), or fails.

 # Safety
 The strings are NUL-terminated; `options` is NULL or valid; `on_step` is NULL or callable
 with `user`.
 */
enum MvditStatus mvdit_train(const char *config,
                             const char *out,
                             const struct MvditTrainOptions *options,
                             MvditStepCallback on_step,
                             void *user);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* MVDIT_H */
