"""mvdit: train and sample MV-Split Diffusion Transformers (up to 1000 layers) from Python.

Three lines to an image::

    import mvdit
    pipe = mvdit.TextToImage("dit.safetensors", "qwen3-0.6b/", "flux2-ae.safetensors")
    pipe.generate(["a red fox in the snow"]).pil[0].save("fox.png")

Everything runs in mvdit's Rust library (the same code as the ``mvdit`` command) with the
GIL released. Errors: ``FileNotFoundError`` for a missing file, ``ValueError`` for a bad option
(the message names the command line's flag), :class:`mvdit.Error` for the rest; each carries
the command line's one-line message.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _mvdit
from ._mvdit import Error, __version__

__all__ = [
    "Error",
    "Generation",
    "TextToImage",
    "ClassSampler",
    "train",
    "prepare",
    "convert",
    "load",
    "save",
    "__version__",
]

PathLike = Union[str, "os.PathLike[str]"]


def _path(p: Optional[PathLike], what: str) -> Optional[str]:
    """``p`` as a string, or ``FileNotFoundError`` naming it when it does not exist."""
    if p is None:
        return None
    s = os.fspath(p)
    if not os.path.exists(s):
        raise FileNotFoundError(f"{s}: cannot open: No such file or directory ({what})")
    return s


def _device(devices: Union[None, int, Sequence[int]]) -> Optional[int]:
    if devices is None:
        return None
    if isinstance(devices, int):
        return devices
    devices = list(devices)
    if len(devices) != 1:
        raise ValueError(f"devices: sampling runs on one device, got {devices}")
    return int(devices[0])


class Generation:
    """What a sampler made: ``images`` (uint8 [N, H, W, 3]), ``latents`` (float32
    [N, C, h, w], text to image only), ``labels`` (class sampling only) and ``notes``."""

    def __init__(self, images: np.ndarray, latents: Optional[np.ndarray] = None, labels: Optional[List[int]] = None, notes: Sequence[str] = ()):
        self.images = images
        self.latents = latents
        self.labels = labels
        self.notes = list(notes)

    @property
    def pil(self) -> List[Any]:
        """The images as ``PIL.Image.Image`` objects (needs Pillow: ``pip install pillow``)."""
        from PIL import Image

        return [Image.fromarray(img) for img in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        lat = "" if self.latents is None else f", latents {list(self.latents.shape)}"
        return f"Generation(images {list(self.images.shape)}{lat})"


class TextToImage:
    """A text-to-image pipeline: a DiT checkpoint (a safetensors file, a sharded directory or a
    ``.pt`` converted with :func:`convert`), a Qwen3 text-encoder directory and a FLUX.2
    autoencoder file, with the release's ``sample.py`` semantics.

    ``backend``: "cpu", "wgpu" or "vulkan"; ``devices``: the GPU index (an int or a one-entry
    list); ``max_memory``: e.g. "8GB", the DiT weights held at once (a larger model streams
    from its file); ``weights``: "auto", "f32", "bf16" or "f16", the dtype the weights are held
    in; ``config``: a model config JSON for checkpoints without one.
    """

    def __init__(
        self,
        checkpoint: PathLike,
        text_encoder: PathLike,
        vae: PathLike,
        *,
        config: Optional[PathLike] = None,
        backend: str = "cpu",
        devices: Union[None, int, Sequence[int]] = None,
        max_memory: Optional[str] = None,
        weights: str = "auto",
        threads: int = 0,
        ema: bool = True,
    ):
        self._inner = _mvdit.TextToImage(
            _path(checkpoint, "checkpoint"),
            _path(text_encoder, "text_encoder"),
            _path(vae, "vae"),
            config=_path(config, "config"),
            backend=backend,
            device=_device(devices),
            threads=threads,
            max_memory=max_memory,
            weights=weights,
            ema=ema,
        )

    @property
    def notes(self) -> List[str]:
        """What opening found worth saying (EMA weights, where the weights are held)."""
        return self._inner.notes()

    def generate(
        self,
        prompts: Union[str, Sequence[str]],
        *,
        steps: Optional[int] = None,
        cfg: Optional[float] = None,
        shift: Optional[float] = None,
        size: int = 256,
        seed: int = 0,
        heun: bool = False,
        noise: Optional[np.ndarray] = None,
        sampler: Optional[str] = None,
        cfg_interval: Optional[Tuple[float, float]] = None,
        cache_threshold: Optional[float] = None,
    ) -> Generation:
        """One image per prompt: ``steps`` steps of ``sampler`` (euler, heun, dpm2m, dpm3m, ab2,
        ab3, sde) on the grid shifted by ``shift``, guidance ``cfg`` (only above 1; only for t in
        ``cfg_interval`` when given), ``size`` pixels; ``cache_threshold`` above 0 reuses a block
        stage's update while its input moved less than that (relative RMS; 0: off); ``noise``
        (float32 [N, C, size/16, size/16]) replaces the seed's initial latents. Settings left None are the checkpoint's
        (its training config's ``sample`` section; the release's: 35 Euler steps, cfg 2, shift 4)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if noise is not None:
            noise = np.ascontiguousarray(noise, dtype=np.float32)
            want = (len(prompts), *self._inner.latent_shape(size))
            if noise.shape != want:
                raise ValueError(f"noise: shape {list(noise.shape)}, expected {list(want)} for {len(prompts)} prompts at --size {size}")
        images, latents, notes = self._inner.generate(list(prompts), steps=steps, cfg=cfg, shift=shift, size=size, seed=seed, heun=heun, noise=noise, sampler=sampler, cfg_interval=cfg_interval, cache_threshold=cache_threshold)
        return Generation(images, latents=latents, notes=notes)


class ClassSampler:
    """Images from a class-conditional checkpoint of ``mvdit train``; ``vae`` decodes a model
    of latents (trained on ``mvdit prepare`` shards)."""

    def __init__(
        self,
        checkpoint: PathLike,
        *,
        vae: Optional[PathLike] = None,
        backend: str = "cpu",
        devices: Union[None, int, Sequence[int]] = None,
        threads: int = 0,
        ema: bool = True,
    ):
        self._inner = _mvdit.ClassSampler(_path(checkpoint, "checkpoint"), vae=_path(vae, "vae"), backend=backend, device=_device(devices), threads=threads, ema=ema)

    @property
    def class_names(self) -> List[str]:
        """The class names, by label."""
        return self._inner.class_names

    def generate(
        self,
        classes: Optional[Sequence[int]] = None,
        *,
        count: int = 8,
        steps: Optional[int] = None,
        cfg: Optional[float] = None,
        shift: Optional[float] = None,
        seed: int = 0,
        heun: bool = False,
        sampler: Optional[str] = None,
        cfg_interval: Optional[Tuple[float, float]] = None,
        cache_threshold: Optional[float] = None,
    ) -> Generation:
        """``count`` images of each class of ``classes`` (every class when None); the sampler
        settings as :meth:`TextToImage.generate`, those left None from the checkpoint's config."""
        images, labels = self._inner.generate(None if classes is None else [int(c) for c in classes], count=count, steps=steps, cfg=cfg, shift=shift, seed=seed, heun=heun, sampler=sampler, cfg_interval=cfg_interval, cache_threshold=cache_threshold)
        return Generation(images, labels=labels)


def train(
    config: Union[str, PathLike],
    out: PathLike,
    *,
    data: Optional[PathLike] = None,
    steps: Optional[int] = None,
    resume: Union[bool, str] = False,
    init: Optional[PathLike] = None,
    on_step: Optional[Callable[[Dict[str, Any]], Optional[bool]]] = None,
    backend: str = "cpu",
    device: Optional[int] = None,
    devices: Optional[Sequence[int]] = None,
    micro_batches: int = 1,
    threads: int = 0,
) -> Dict[str, Any]:
    """Trains into the run directory ``out`` as ``mvdit train`` does (the same files:
    config, checkpoints, metrics.jsonl, samples, loss.png).

    ``config``: a TOML/JSON file or a preset ("digits", "deep1000", "tiny"); ``data``: an
    image folder (one sub-folder per class) or a shard set of :func:`prepare`; ``steps``
    overrides the config's; ``resume`` continues from the latest checkpoint in ``out`` that verifies
    (``"auto"``: when there is one, else a new run);
    ``init`` starts from a checkpoint's weights; ``devices`` splits the model by depth.
    ``on_step(record)`` hears each logged record (a metrics.jsonl line as a dict) and may return
    False to stop: the run writes a checkpoint and returns (``stopped`` is True). Ctrl-C does
    the same, then raises ``KeyboardInterrupt``; ``resume=True`` continues exactly.

    Returns a summary: step, stopped, last_loss, eval_losses, checkpoint, median_step_seconds.
    """
    name = os.fspath(config)
    if os.sep in name or name.endswith((".toml", ".json")) or os.path.exists(name):
        name = _path(name, "config")
    # else a preset's name; an unknown one is refused with the list of presets (mvdit.Error)
    return _mvdit.train(
        name,
        os.fspath(out),
        data=_path(data, "data"),
        steps=steps,
        resume=resume,
        init=_path(init, "init"),
        on_step=on_step,
        backend=backend,
        device=device,
        devices=None if devices is None else [int(d) for d in devices],
        micro_batches=micro_batches,
        threads=threads,
    )


def prepare(
    images: PathLike,
    vae: PathLike,
    out: PathLike,
    *,
    text_encoder: Optional[PathLike] = None,
    captions: Optional[PathLike] = None,
    size: int = 256,
    flip: bool = False,
    shard_size: int = 2048,
    dtype: str = "bf16",
    seed: int = 0,
    backend: str = "cpu",
    device: Optional[int] = None,
    threads: int = 0,
) -> None:
    """An image folder (class sub-folders, or a flat folder with ``captions`` JSON lines) to
    training shards in ``out``, as ``mvdit prepare``."""
    _mvdit.prepare(
        _path(images, "images"),
        _path(vae, "vae"),
        os.fspath(out),
        text_encoder=_path(text_encoder, "text_encoder"),
        captions=_path(captions, "captions"),
        size=size,
        flip=flip,
        shard_size=shard_size,
        dtype=dtype,
        seed=seed,
        backend=backend,
        device=device,
        threads=threads,
    )


def convert(input: PathLike, config: PathLike, out: PathLike, *, dtype: Optional[str] = None) -> Dict[str, int]:
    """A PyTorch ``.pt`` state dict (the released ``model.pt``) to an mvdit safetensors
    checkpoint, checked against the model config JSON; ``dtype``: "bf16", "f16", "f32" or None
    (as stored). Returns tensors, bytes and dropped_ones."""
    return _mvdit.convert(_path(input, "input"), _path(config, "config"), os.fspath(out), dtype=dtype)


def load(path: PathLike) -> Dict[str, np.ndarray]:
    """Every tensor of a safetensors file, a sharded set (directory or index) or a ``.pt``
    state dict (through mvdit's restricted unpickler: nothing is imported or run): floats as
    float32, integers as int64."""
    s = _path(path, "path")
    if s.endswith(".index.json"):
        s = os.path.dirname(s) or "."
    return _mvdit.load(s)


def save(path: PathLike, tensors: Mapping[str, np.ndarray], metadata: Optional[Mapping[str, str]] = None) -> None:
    """Writes ``tensors`` as float32 in one safetensors file (atomically), with string
    ``metadata``."""
    arrays = {str(k): np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    _mvdit.save(os.fspath(path), arrays, None if metadata is None else {str(k): str(v) for k, v in metadata.items()})
