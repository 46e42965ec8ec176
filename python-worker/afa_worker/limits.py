"""Upper bounds on every count and size a request can carry. A worker on a shared machine must
not start work it cannot stop, nor allocate without bound, because a field said 2^32-1. The SDK
checks the same bounds before anything is sent (``ts-sdk/src/dsl/limits.ts``; a contract test
compares the two tables)."""

from __future__ import annotations

import math
import os

from afa_worker.errors import SpecError

__all__ = ["LIMITS", "FLOAT32_MAX", "check_max", "check_chars", "check_float32", "check_finite", "max_threads"]

#: Spec floats are doubles on the wire and float32 in the model: larger ones would become inf there.
FLOAT32_MAX = 3.4028234663852886e38

LIMITS: dict[str, int] = {
    # training
    "iterations": 100_000_000,  # each step checks for cancellation, so a long stage can still be stopped
    "batch_size": 4096,
    "eval_batch_size": 4096,
    "hidden": 4096,  # attention MLP hidden units
    "delta_head_iterations": 100_000,
    "delta_ablation_batches": 64,
    "feature_cache_mb": 1 << 20,  # 1 TiB: a budget, the cache never exceeds the training set's maps
    # models and data
    "width": 1024,
    "depth": 64,
    "in_channels": 64,
    "image_size": 1024,  # a square side, after decoding (see data.sources.MAX_IMAGE_PIXELS for the input)
    "classes": 100_000,  # entries in a class subset
    "layers": 256,  # aligned layers
    "attention_images": 16,  # images in a stage's attention snapshot
    # weights over the wire
    "weights_bytes": 8 << 30,  # one uploaded weights file (ResNet-101 is ~170 MB)
    "dataset_bytes": 8 << 30,  # one uploaded packed data set (CUB-200 is ~1.1 GB, Stanford Dogs ~0.8 GB)
    "dataset_images": 2_000_000,  # images in one data set
    # text
    "name_chars": 200,  # a name: backbone, layer, stage, experiment
    "path_chars": 4096,  # a path on the worker's machine (Linux's PATH_MAX)
}


def check_max(value: int, field: str, limit: str) -> int:
    bound = LIMITS[limit]
    if value > bound:
        raise SpecError(field, f"must be <= {bound}, got {value}")
    return int(value)


def check_chars(value: str, field: str, limit: str) -> str:
    """A string of at most LIMITS[limit] characters (the message quotes its start, not all of it)."""
    bound = LIMITS[limit]
    if len(value) > bound:
        raise SpecError(field, f"must be at most {bound} characters, got {len(value)} ({value[:40]!r}...)")
    return value


def check_float32(value: float, field: str) -> float:
    if abs(value) > FLOAT32_MAX:
        raise SpecError(field, f"must be at most {FLOAT32_MAX:.4g} (it becomes float32 in the model), got {value}")
    return float(value)


def check_finite(value: float, field: str, *, positive: bool = False) -> float:
    """A finite number >= 0 (> 0 when ``positive``) that float32 can hold."""
    if not math.isfinite(value) or not (value > 0 if positive else value >= 0):
        raise SpecError(field, f"must be a finite number {'> 0' if positive else '>= 0'}, got {value}")
    return check_float32(value, field)


def max_threads() -> int:
    """torch threads a request may ask for: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
