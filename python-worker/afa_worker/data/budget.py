"""How much memory a session's images may take on this worker: $AFA_DATA_MEMORY_GB, else half the
machine's memory up to 32 GiB. Checked before anything is decoded or resized, so a request for
MNIST at 1024 x 1024 (60,000 images: 63 GB) is refused naming the field, not answered by the
kernel's OOM killer taking the worker and every session on it."""

from __future__ import annotations

import os

from afa_worker.errors import SpecError

__all__ = ["data_budget_bytes", "check_data_budget"]

_GIB = 1 << 30


def data_budget_bytes() -> int:
    text = os.environ.get("AFA_DATA_MEMORY_GB", "")
    if text:
        try:
            return int(float(text) * _GIB)
        except ValueError:
            pass
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 64 * _GIB
    return min(32 * _GIB, physical // 2)


def check_data_budget(field: str, images: int, channels: int, height: int, width: int, what: str = "images") -> None:
    """SpecError when ``images`` uint8 images of that shape do not fit the budget."""
    need = images * channels * height * width
    budget = data_budget_bytes()
    if need > budget:
        raise SpecError(field, f"{images} {what} at {height}x{width}x{channels} need {need / _GIB:.1f} GB, more than the worker's "
                               f"data budget of {budget / _GIB:.1f} GB ($AFA_DATA_MEMORY_GB); use a smaller image_size or "
                               "fewer images (labels_per_class, test_per_class, classes)")
