"""Process-wide torch settings of the worker, applied once at start (not at import)."""

from __future__ import annotations

import torch

__all__ = ["configure_torch"]


def configure_torch(threads: int = 0) -> None:
    if threads:
        torch.set_num_threads(threads)
    # NNPACK cannot initialise on many CPUs and then warns on every conv; the default path is as fast.
    torch.backends.nnpack.set_flags(False)
