"""IDX files (the MNIST/Fashion-MNIST format), plain or gzip-compressed, read with checks so that a
truncated or corrupt file is a clear error instead of garbage tensors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from afa_worker.errors import SpecError

__all__ = ["read_idx", "find_idx"]

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def find_idx(directory: Path, stem: str, field: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise SpecError(field, f"{stem}[.gz] not found in {directory}")


def read_idx(path: Path, field: str) -> np.ndarray:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise SpecError(field, f"cannot read {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise SpecError(field, f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise SpecError(field, f"{path} is truncated (header)")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise SpecError(field, f"{path} is truncated or corrupt: {len(raw) - header} data bytes, expected {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
