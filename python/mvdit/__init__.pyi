"""Type stubs of the public names of mvdit (see __init__.py for the documentation)."""

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

PathLike = Union[str, os.PathLike[str]]

__version__: str

class Error(Exception):
    """An mvdit job failed; the message names the file, tensor or field."""

class Generation:
    """What a sampler made."""

    images: np.ndarray
    latents: Optional[np.ndarray]
    labels: Optional[List[int]]
    notes: List[str]
    def __init__(self, images: np.ndarray, latents: Optional[np.ndarray] = ..., labels: Optional[List[int]] = ..., notes: Sequence[str] = ...) -> None: ...
    @property
    def pil(self) -> List[Any]:
        """The images as PIL.Image.Image objects (needs Pillow)."""
    def __len__(self) -> int: ...

class TextToImage:
    """A text-to-image pipeline: DiT checkpoint, Qwen3 text encoder, FLUX.2 autoencoder."""

    def __init__(
        self,
        checkpoint: PathLike,
        text_encoder: PathLike,
        vae: PathLike,
        *,
        config: Optional[PathLike] = ...,
        backend: str = ...,
        devices: Union[None, int, Sequence[int]] = ...,
        max_memory: Optional[str] = ...,
        weights: str = ...,
        threads: int = ...,
        ema: bool = ...,
    ) -> None: ...
    @property
    def notes(self) -> List[str]:
        """What opening found worth saying."""
    def generate(
        self,
        prompts: Union[str, Sequence[str]],
        *,
        steps: Optional[int] = ...,
        cfg: Optional[float] = ...,
        shift: Optional[float] = ...,
        size: int = ...,
        seed: int = ...,
        heun: bool = ...,
        noise: Optional[np.ndarray] = ...,
        sampler: Optional[str] = ...,
        cfg_interval: Optional[Tuple[float, float]] = ...,
        cache_threshold: Optional[float] = ...,
    ) -> Generation:
        """One image per prompt."""

class ClassSampler:
    """Images from a class-conditional checkpoint of mvdit train."""

    def __init__(
        self,
        checkpoint: PathLike,
        *,
        vae: Optional[PathLike] = ...,
        backend: str = ...,
        devices: Union[None, int, Sequence[int]] = ...,
        threads: int = ...,
        ema: bool = ...,
    ) -> None: ...
    @property
    def class_names(self) -> List[str]:
        """The class names, by label."""
    def generate(
        self,
        classes: Optional[Sequence[int]] = ...,
        *,
        count: int = ...,
        steps: Optional[int] = ...,
        cfg: Optional[float] = ...,
        shift: Optional[float] = ...,
        seed: int = ...,
        heun: bool = ...,
        sampler: Optional[str] = ...,
        cfg_interval: Optional[Tuple[float, float]] = ...,
        cache_threshold: Optional[float] = ...,
    ) -> Generation:
        """count images of each class (every class when None)."""

def train(
    config: Union[str, PathLike],
    out: PathLike,
    *,
    data: Optional[PathLike] = ...,
    steps: Optional[int] = ...,
    resume: Union[bool, str] = ...,
    init: Optional[PathLike] = ...,
    on_step: Optional[Callable[[Dict[str, Any]], Optional[bool]]] = ...,
    backend: str = ...,
    device: Optional[int] = ...,
    devices: Optional[Sequence[int]] = ...,
    micro_batches: int = ...,
    threads: int = ...,
) -> Dict[str, Any]:
    """Trains into the run directory out, as mvdit train does."""

def prepare(
    images: PathLike,
    vae: PathLike,
    out: PathLike,
    *,
    text_encoder: Optional[PathLike] = ...,
    captions: Optional[PathLike] = ...,
    size: int = ...,
    flip: bool = ...,
    shard_size: int = ...,
    dtype: str = ...,
    seed: int = ...,
    backend: str = ...,
    device: Optional[int] = ...,
    threads: int = ...,
) -> None:
    """An image folder to training shards, as mvdit prepare."""

def convert(input: PathLike, config: PathLike, out: PathLike, *, dtype: Optional[str] = ...) -> Dict[str, int]:
    """A PyTorch .pt state dict to an mvdit safetensors checkpoint."""

def load(path: PathLike) -> Dict[str, np.ndarray]:
    """Every tensor of a safetensors file, a sharded set or a .pt state dict."""

def save(path: PathLike, tensors: Mapping[str, np.ndarray], metadata: Optional[Mapping[str, str]] = ...) -> None:
    """Writes float32 tensors in one safetensors file."""
