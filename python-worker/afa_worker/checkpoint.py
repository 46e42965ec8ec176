"""Checkpoints: the target model as safetensors plus a JSON sidecar with the spec, both written to
a temporary name and renamed, so a crash never leaves a torn file."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from afa_worker import __version__

__all__ = ["save_checkpoint", "atomic_write_bytes"]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(model: torch.nn.Module, path: str, metadata: dict) -> tuple[str, str, int, str]:
    target = Path(path)
    if target.suffix != ".safetensors":
        target = target.with_suffix(target.suffix + ".safetensors") if target.suffix else target.with_suffix(".safetensors")
    target.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared storage; clone makes every tensor its own contiguous buffer.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", "afa_worker": __version__})
    os.replace(tmp, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    sidecar = target.with_suffix(".json")
    body = {**metadata, "weights": target.name, "sha256": digest, "saved_at": time.time(), "worker_version": __version__}
    atomic_write_bytes(sidecar, json.dumps(body, indent=2, sort_keys=True).encode())
    return str(target), str(sidecar), target.stat().st_size, digest
