"""Checkpoints: the target model as safetensors plus a JSON sidecar with the spec. Paths resolve
inside the worker's checkpoint directory (a relative path lands there; an absolute one must be
under it or under a directory the worker was allowed to write to); both files are written to a
fresh temporary file in the target folder (created exclusively, never through a planted link) and
renamed, so a crash never leaves a torn file; a file that is not one of our checkpoints is never
overwritten."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from afa_worker import __version__
from afa_worker.paths import check_path_text
from afa_worker.errors import SpecError

__all__ = ["save_checkpoint", "checkpoint_bytes", "atomic_write_bytes", "CheckpointPolicy", "WriteRefused"]


class WriteRefused(SpecError):
    """The path is one the worker may not or cannot write (INVALID_ARGUMENT, field ``path``)."""


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where SaveCheckpoint may write: under ``root`` (relative paths resolve there), under any of
    ``allowed``, or anywhere the worker's user can write when ``anywhere``."""

    root: Path
    allowed: tuple[Path, ...] = field(default_factory=tuple)
    anywhere: bool = False

    def resolve(self, path: str) -> Path:
        check_path_text(path, "path", len(".safetensors") + 1, WriteRefused)
        raw = Path(path).expanduser()
        target = raw if raw.is_absolute() else self.root / raw
        if target.exists() and not target.is_file():
            raise WriteRefused("path", f"{path} is a directory or device, not a checkpoint file")
        if target.suffix != ".safetensors":
            target = target.with_name(target.name + ".safetensors")
        # The folder as it really is (links resolved), so a link cannot carry a write outside.
        folder = Path(os.path.realpath(target.parent))
        resolved = folder / target.name
        if not self.anywhere and not any(_inside(folder, Path(os.path.realpath(r))) for r in (self.root, *self.allowed)):
            raise WriteRefused("path", f"{path} is outside the worker's checkpoint directory {self.root} (give a "
                                       "relative path, or start the worker with --allow-write DIR)")
        return resolved


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _exclusive_temp(folder: Path, name: str) -> tuple[int, Path]:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")  # O_CREAT | O_EXCL, mode 0600
    return fd, Path(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = _exclusive_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _refuse_foreign(path: Path, ours) -> None:
    """A file already at ``path`` must be a regular file that ``ours`` recognises as our own."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise WriteRefused("path", f"{path} exists and is not a regular file (a directory, link or device)")
    if not ours(path):
        raise WriteRefused("path", f"{path} exists and is not a checkpoint of this worker; choose another path "
                                   "or remove it")


def _is_our_weights(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="pt") as fh:
            return "afa_worker" in (fh.metadata() or {})
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False


def _is_our_sidecar(path: Path) -> bool:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and "worker_version" in body and "sha256" in body


def checkpoint_bytes(model: torch.nn.Module, card_json: str = "") -> bytes:
    """The model's state as a safetensors file marked as this worker's, its model card (proto3 JSON)
    in the file's own metadata, so the weights alone say how to predict with them."""
    # safetensors refuses shared storage; clone makes every tensor its own contiguous buffer.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", "afa_worker": __version__}
    if card_json:
        metadata["afa_model_card"] = card_json
    return safetensors_bytes(tensors, metadata=metadata)


def save_checkpoint(model: torch.nn.Module, path: str, metadata: dict,
                    policy: CheckpointPolicy | None = None, card_json: str = "") -> tuple[str, str, int, str]:
    policy = policy or CheckpointPolicy(Path(os.path.realpath(".")), anywhere=True)
    target = policy.resolve(path)
    sidecar = target.with_suffix(".json")
    _refuse_foreign(target, _is_our_weights)
    _refuse_foreign(sidecar, _is_our_sidecar)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        data = checkpoint_bytes(model, card_json)
        atomic_write_bytes(target, data)
        digest = hashlib.sha256(data).hexdigest()
        body = {**metadata, "weights": target.name, "sha256": digest, "saved_at": time.time(), "worker_version": __version__}
        if card_json:
            body["model_card"] = json.loads(card_json)
        atomic_write_bytes(sidecar, json.dumps(body, indent=2, sort_keys=True).encode())
    except OSError as exc:
        raise WriteRefused("path", f"cannot write {path}: {exc.strerror or exc}") from exc
    return str(target), str(sidecar), len(data), digest
