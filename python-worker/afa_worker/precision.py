"""The arithmetic a session computes in, resolved once for its device (see ``Precision`` in the
proto): autocast contexts for the trained network and for the frozen source's forward."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.errors import SpecError

__all__ = ["PrecisionPlan", "resolve_precision", "cpu_computes_bf16"]

_CHOICES = {pb.PRECISION_AUTO: "auto", pb.PRECISION_FP32: "fp32", pb.PRECISION_BF16: "bf16"}


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 units (AVX512-BF16 or AMX), where oneDNN runs bf16 convolutions
    faster than fp32 (measured: a width-32 source forward 19.5 -> 12.4 ms); elsewhere bf16 is
    emulated and slower."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    except RuntimeError:
        return False


@dataclass(frozen=True)
class PrecisionPlan:
    device: torch.device
    #: dtype of the trained network's forward (bf16 = autocast; fp32 = none)
    train: torch.dtype
    #: dtype of the frozen source's forward; its maps only serve as an alignment target
    source: torch.dtype

    def train_autocast(self):
        return self._autocast(self.train)

    def source_autocast(self):
        return self._autocast(self.source)

    def _autocast(self, dtype: torch.dtype):
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    @property
    def source_bytes(self) -> int:
        """Bytes per element of the source's maps (the feature cache's budget counts in these)."""
        return torch.finfo(self.source).bits // 8

    def describe(self) -> str:
        name = {torch.float32: "fp32", torch.bfloat16: "bf16"}
        if self.train == self.source:
            return name[self.train]
        return f"{name[self.train]}, source {name[self.source]}"


def resolve_precision(choice: int, device: torch.device) -> PrecisionPlan:
    if choice not in _CHOICES:
        raise SpecError("precision", f"unknown precision {choice}", list(_CHOICES.values()))
    fp32, bf16 = torch.float32, torch.bfloat16
    if choice == pb.PRECISION_FP32:
        return PrecisionPlan(device, fp32, fp32)
    if choice == pb.PRECISION_BF16:
        return PrecisionPlan(device, bf16, bf16)
    if device.type == "cuda":
        fast = torch.cuda.is_bf16_supported()
        return PrecisionPlan(device, bf16 if fast else fp32, bf16 if fast else fp32)
    # On CPU the trained network stays fp32 unless asked (bf16 training changes the optimisation);
    # the source forward, about a third of a step's arithmetic, has no gradients and only serves as
    # an alignment target (maps within ~1 % of fp32), so it goes bf16 where the CPU does that fast.
    return PrecisionPlan(device, fp32, bf16 if device.type == "cpu" and cpu_computes_bf16() else fp32)
