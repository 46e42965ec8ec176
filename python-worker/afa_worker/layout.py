"""The memory layout a session's models train in, chosen per model so valid input never crashes.

Channels-last is faster for convolutions on most shapes (cuDNN, and oneDNN on the CPU: a
fine-tuning step 8-23 % faster at widths 8-64 here). But on the CPU, the oneDNN of torch 2.13
(v3.12) corrupts the heap in its AVX-512 backward-weights kernel for 1x1 convolutions of stride 2
with 2-15 input channels in channels-last, from inputs of about 56 x 56 up (found by bisection;
glibc aborts with "corrupted size vs. prev_size", or a segfault, in
``jit_avx512_common_1x1_convolution_bwd_weights_t``): a small ResNet of width 4 or 8 has exactly
such a downsample. The same convolutions in contiguous (NCHW) memory are sound.

So, on the CPU:
- a model with such a layer trains contiguous (the known fault; no probe needed);
- a model with another strided convolution of fewer than 16 input channels (the fault's
  neighbourhood: oneDNN blocks channels by 16 there, and ResNet and MobileNet stems are such
  layers) is probed: a forward and backward of the model in channels-last, at the session's input
  size and precision, in a throwaway subprocess; if that process dies, the model trains contiguous.
  The verdict is cached on disk per torch build, CPU, model structure, input shape and precision
  ($AFA_CACHE/layout/), so a node probes each once;
- any other model trains channels-last.
On CUDA every model trains channels-last (cuDNN's preferred layout; the fault is oneDNN's).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from afa_worker.cancel import check_cancelled

__all__ = ["Layout", "ModelRecipe", "choose_layout", "faulty_layers", "probed_layers", "PROBE_TIMEOUT_SECONDS"]

#: Longest the probe subprocess may take before the model is treated as unsafe in channels-last.
PROBE_TIMEOUT_SECONDS = 300.0
_VERDICT_VERSION = 1


@dataclass(frozen=True)
class Layout:
    memory_format: torch.memory_format
    #: Why this layout, in a line (shown in the session's progress and in crash reports).
    reason: str
    #: Seconds spent probing (0 when no probe ran or the verdict was cached).
    probe_seconds: float = 0.0

    @property
    def name(self) -> str:
        return "channels_last" if self.memory_format == torch.channels_last else "contiguous"


def _convs(model: nn.Module):
    return ((name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d))


def faulty_layers(model: nn.Module) -> list[str]:
    """Layers of the known oneDNN fault: 1x1 convolutions, stride > 1, 2-15 input channels."""
    return [name for name, m in _convs(model)
            if m.kernel_size == (1, 1) and m.stride != (1, 1) and 1 < m.in_channels < 16]


def probed_layers(model: nn.Module) -> list[str]:
    """The fault's neighbourhood: any other strided convolution with fewer than 16 input channels."""
    faulty = set(faulty_layers(model))
    return [name for name, m in _convs(model) if m.stride != (1, 1) and m.in_channels < 16 and name not in faulty]


def _structure(model: nn.Module) -> str:
    """What the kernels see of the model: every convolution's shape (and the module types)."""
    parts = [type(model).__name__]
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            parts.append(f"{name}:{m.in_channels}>{m.out_channels}k{m.kernel_size}s{m.stride}p{m.padding}d{m.dilation}g{m.groups}")
    return "|".join(parts)


def _verdict_key(model: nn.Module, input_shape: tuple[int, int, int], precision: str) -> str:
    onednn = getattr(torch.backends.mkldnn, "version", lambda: "")()
    capability = torch.backends.cpu.get_cpu_capability()
    text = f"v{_VERDICT_VERSION}|{torch.__version__}|{onednn}|{capability}|{_structure(model)}|{input_shape}|{precision}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _verdict_dir() -> Path:
    from afa_worker.weight_store import default_cache_dir  # noqa: PLC0415

    return default_cache_dir() / "layout"


def _read_verdict(key: str) -> dict | None:
    try:
        body = json.loads((_verdict_dir() / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) and isinstance(body.get("safe"), bool) else None


def _write_verdict(key: str, body: dict) -> None:
    folder = _verdict_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")  # exclusive, then renamed whole
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(body, f)
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        Path(tmp).unlink(missing_ok=True)


@dataclass(frozen=True)
class ModelRecipe:
    """How to build the model again in the probe (build_backbone's arguments): its structure, not its weights."""

    name: str
    num_classes: int
    in_channels: int
    width: int
    depth: int


def _probe(recipe: ModelRecipe, input_shape: tuple[int, int, int], bf16: bool) -> tuple[bool, str]:
    """Forward and backward of the model in channels-last in a throwaway process: (survived, how it ended)."""
    job = json.dumps({"recipe": recipe.__dict__, "input_shape": list(input_shape), "bf16": bf16})
    # One thread: the fault does not need more, and the probe must not take the session's cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryFile() as stderr:  # a pipe could fill and stall the child
        child = subprocess.Popen([sys.executable, "-m", "afa_worker.layout_probe", job], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=Path(__file__).resolve().parents[1])
        deadline = time.monotonic() + PROBE_TIMEOUT_SECONDS
        try:
            while child.poll() is None:
                check_cancelled("probing the memory layout")  # a cancelled CreateSession does not wait for the probe
                if time.monotonic() > deadline:
                    return False, f"the probe did not finish within {PROBE_TIMEOUT_SECONDS:.0f} s"
                time.sleep(0.05)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        stderr.seek(0)
        tail = stderr.read()[-4096:].decode(errors="replace").strip().splitlines()[-1:]
    if child.returncode == 0:
        return True, "survived"
    how = f"signal {-child.returncode}" if child.returncode < 0 else f"exit code {child.returncode}"
    return False, f"the probe died ({how}{': ' + tail[0][:200] if tail else ''})"


def choose_layout(model: nn.Module, recipe: ModelRecipe, input_shape: tuple[int, int, int], device: torch.device,
                  bf16: bool) -> Layout:
    """The layout the session trains ``model`` in (see the module's docstring)."""
    if device.type != "cpu":
        return Layout(torch.channels_last, f"channels-last on {device.type}")
    faulty = faulty_layers(model)
    if faulty:
        return Layout(torch.contiguous_format, f"contiguous: {', '.join(faulty[:3])} would meet oneDNN's 1x1 stride-2 "
                                               "backward-weights fault in channels-last (fewer than 16 input channels)")
    probed = probed_layers(model)
    if not probed:
        return Layout(torch.channels_last, "channels-last")
    key = _verdict_key(model, input_shape, "bf16" if bf16 else "fp32")
    verdict = _read_verdict(key)
    started = time.perf_counter()
    seconds = 0.0
    if verdict is None:
        safe, how = _probe(recipe, input_shape, bf16)
        seconds = time.perf_counter() - started
        verdict = {"safe": safe, "how": how}
        if "did not finish" not in how:  # a slow machine's timeout says nothing of the kernels: probe again next time
            _write_verdict(key, verdict)
    if verdict["safe"]:
        return Layout(torch.channels_last, "channels-last (probed)", seconds)
    return Layout(torch.contiguous_format, f"contiguous: in channels-last {verdict['how']}", seconds)
