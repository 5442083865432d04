"""The Python package against the command line, on the repository's golden fixtures.

Run by scripts/test after `pip install ./python` in a fresh venv; MVDIT_BIN names the
`mvdit` binary of the same build (else `python -m mvdit` is used, the same code in-process).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mvdit

ROOT = Path(__file__).resolve().parents[2]
T2I = ROOT / "tests" / "golden" / "t2i"
FROZEN = ROOT / "tests" / "golden" / "frozen"


def cli(*args: str) -> subprocess.CompletedProcess:
    exe = os.environ.get("MVDIT_BIN")
    cmd = [exe] if exe else [sys.executable, "-m", "mvdit"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True)


def case():
    """Prompts and settings of the t2i golden case (its safetensors metadata)."""
    raw = (T2I / "case.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8 : 8 + n])["__metadata__"]
    return json.loads(meta["prompts"]), meta


def train_losses(run: Path):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in lines if r["kind"] == "train"]


@pytest.mark.parametrize("extra", [{}, {"sampler": "dpm2m", "cfg_interval": (0.0, 0.6), "cache_threshold": 0.05}])
def test_three_lines_equal_mvdit_sample_bit_for_bit(tmp_path, extra):
    prompts, meta = case()
    noise = mvdit.load(T2I / "noise.safetensors")["noise"]
    settings = dict(steps=int(meta["steps"]), cfg=float(meta["cfg"]), shift=float(meta["shift"]), size=int(meta["size"]))

    pipe = mvdit.TextToImage(T2I / "dit.safetensors", FROZEN / "qwen3-tiny", FROZEN / "ae-a.safetensors")
    out = pipe.generate(prompts, noise=noise, **settings, **extra)

    args = ["sample", "--checkpoint", str(T2I / "dit.safetensors"), "--text-encoder", str(FROZEN / "qwen3-tiny"), "--vae", str(FROZEN / "ae-a.safetensors")]
    for p in prompts:
        args += ["--prompt", p]
    args += ["--noise", str(T2I / "noise.safetensors"), "--out", str(tmp_path)]
    flags = {**settings, **extra}
    if "cfg_interval" in flags:
        flags["cfg_interval"] = ",".join(str(v) for v in flags["cfg_interval"])
    args += [x for k, v in flags.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    want = mvdit.load(tmp_path / "latents.safetensors")["latent"]
    assert out.latents.dtype == np.float32 and out.latents.shape == want.shape
    assert np.array_equal(out.latents, want), "latents differ from mvdit sample's"
    if extra:
        used = json.loads((tmp_path / "sampling.json").read_text())
        assert (used["sampler"], used["cfg_interval"], used["cache_threshold"]) == ("dpm2m", [0.0, 0.6], 0.05)
        return

    side = int(meta["size"])
    assert out.images.shape == (len(prompts), side, side, 3) and out.images.dtype == np.uint8
    from PIL import Image

    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == len(prompts)
    for img, png in zip(out.images, pngs):
        assert np.array_equal(img, np.asarray(Image.open(png).convert("RGB"))), png
    assert [im.size for im in out.pil] == [(side, side)] * len(prompts)


def test_training_stopped_by_on_step_then_resumed_equals_one_run(tmp_path):
    whole = mvdit.train("tiny", tmp_path / "whole", steps=20)
    assert whole["step"] == 20 and not whole["stopped"]

    seen = []

    def on_step(record):
        seen.append(record)
        return not (record["kind"] == "train" and record["step"] >= 7)

    # resume="auto" starts a new run where there is no checkpoint, and continues one where there is.
    first = mvdit.train("tiny", tmp_path / "split", steps=20, on_step=on_step, resume="auto")
    assert first["stopped"] and first["step"] == 7
    assert seen[0]["kind"] == "train" and seen[0]["step"] == 1 and isinstance(seen[0]["loss"], float)
    rest = mvdit.train("tiny", tmp_path / "split", steps=20, resume="auto")
    assert rest["step"] == 20
    assert train_losses(tmp_path / "split") == train_losses(tmp_path / "whole")


def test_bad_paths_and_options_raise_with_the_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        mvdit.TextToImage(tmp_path / "missing.safetensors", FROZEN / "qwen3-tiny", FROZEN / "ae-a.safetensors")
    with pytest.raises(ValueError, match="expected cpu, wgpu or vulkan"):
        mvdit.TextToImage(T2I / "dit.safetensors", FROZEN / "qwen3-tiny", FROZEN / "ae-a.safetensors", backend="tpu")
    pipe = mvdit.TextToImage(T2I / "dit.safetensors", FROZEN / "qwen3-tiny", FROZEN / "ae-a.safetensors")
    with pytest.raises(ValueError, match="--size 100"):
        pipe.generate(["a fox"], size=100, steps=1)
    with pytest.raises(ValueError, match="--steps"):
        pipe.generate(["a fox"], steps=0)
    with pytest.raises(ValueError, match="--cache-threshold"):
        pipe.generate(["a fox"], steps=1, cache_threshold=-1.0)
    noise = mvdit.load(T2I / "noise.safetensors")["noise"]
    with pytest.raises(ValueError, match="noise: shape"):
        pipe.generate(["a fox"] * noise.shape[0], size=int(case()[1]["size"]), steps=1, noise=noise[:, :, :, :1])
    with pytest.raises(mvdit.Error, match="not a mvdit training checkpoint"):
        mvdit.ClassSampler(T2I / "dit.safetensors")
    with pytest.raises(mvdit.Error, match="unknown preset|preset"):
        mvdit.train("nopreset", tmp_path / "r")
    with pytest.raises(FileNotFoundError, match="data"):
        mvdit.train("tiny", tmp_path / "r", data=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="resume"):
        mvdit.train("tiny", tmp_path / "r", resume="sometimes")


def test_ctrl_c_raises_keyboard_interrupt_and_leaves_a_resumable_run(tmp_path):
    run = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import os, signal, mvdit
        def on_step(record):
            if record["kind"] == "train" and record["step"] == 3:
                os.kill(os.getpid(), signal.SIGINT)
        try:
            mvdit.train("tiny", {str(run)!r}, steps=20, on_step=on_step)
        except KeyboardInterrupt:
            print("interrupted")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "interrupted", done.stdout + done.stderr
    assert list((run / "checkpoints").iterdir()), "a checkpoint after Ctrl-C"
    rest = mvdit.train("tiny", run, steps=20, resume=True)
    assert rest["step"] == 20
    whole = mvdit.train("tiny", tmp_path / "whole", steps=20)
    assert whole["step"] == 20
    assert train_losses(run) == train_losses(tmp_path / "whole")


def test_load_and_save_round_trip(tmp_path):
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    mvdit.save(tmp_path / "t.safetensors", {"x": x, "y": np.ones(3, np.float32)}, {"note": "hi"})
    back = mvdit.load(tmp_path / "t.safetensors")
    assert back["x"].dtype == np.float32 and np.array_equal(back["x"], x.astype(np.float32))
    assert np.array_equal(back["y"], np.ones(3, np.float32))
    pt = mvdit.load(T2I / "dit.pt")
    assert pt and all(a.dtype == np.float32 and a.size > 0 for a in pt.values())


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "mvdit", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and mvdit.__version__ in done.stdout
    bad = subprocess.run([sys.executable, "-m", "mvdit", "sample", "--checkpoint", "/nonexistent", "--out", "/tmp/x"], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "/nonexistent" in bad.stderr
