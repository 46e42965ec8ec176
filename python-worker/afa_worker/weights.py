"""Loading weight files without executing code: safetensors, or torch files read with
``weights_only=True`` (plain tensors and containers only; a pickle with anything else is refused)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from afa_worker.errors import SpecError

__all__ = ["read_state_dict", "load_into"]

_FIELD = "source_weights"


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    file = Path(path)
    if not file.is_file():
        raise SpecError(_FIELD, f"weights file {path} does not exist")
    if file.suffix == ".safetensors":
        from safetensors import SafetensorError  # noqa: PLC0415
        from safetensors.torch import load_file  # noqa: PLC0415

        try:
            state = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as exc:
            raise SpecError(_FIELD, f"{path} is not a valid safetensors file: {exc}") from exc
    else:
        with open(file, "rb") as fh:
            magic = fh.read(4)
        # torch.save writes a zip archive (PK..) or, in its legacy format, a pickle (protocol byte 0x80).
        if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):
            raise SpecError(_FIELD, f"{path} is not a weights file (neither safetensors nor a torch.save file)")
        try:
            state = torch.load(str(file), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise SpecError(_FIELD, f"{path} was refused: it holds objects other than plain tensors, and "
                                    f"the worker never unpickles code ({str(exc).splitlines()[0]})") from exc
        except (RuntimeError, OSError, EOFError, ValueError) as exc:
            raise SpecError(_FIELD, f"{path} is not a readable torch weights file: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SpecError(_FIELD, f"{path} does not hold a mapping of parameter names to tensors")
    # Checkpoints saved from DataParallel / DistributedDataParallel prefix every key.
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_into(model: nn.Module, state: dict[str, torch.Tensor], head_name: str, path: str) -> int:
    """Loads every non-head tensor (all must be present with matching shapes); the head is loaded
    only when its shape matches, since a head of another size is replaced anyway."""
    own = model.state_dict()
    head_prefix = head_name + "."
    missing = [k for k in own if not k.startswith(head_prefix) and k not in state]
    if missing:
        raise SpecError(_FIELD, f"{path} does not fit this backbone: {len(missing)} tensors missing, "
                                f"e.g. {', '.join(missing[:5])}")
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
             if not k.startswith(head_prefix) and k in state and state[k].shape != v.shape]
    if wrong:
        k, got, want = wrong[0]
        raise SpecError(_FIELD, f"{path} does not fit this backbone: {k} has shape {list(got)}, the model "
                                f"expects {list(want)} ({len(wrong)} mismatched tensors)")
    load = {k: v for k, v in state.items() if k in own and
            (not k.startswith(head_prefix) or v.shape == own[k].shape)}
    model.load_state_dict(load, strict=False)
    return len(load)
