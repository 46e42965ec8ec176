"""What a stage keeps besides the weights: the metric window between step events, and model
selection on validation (the best step's weights, restored at the end when asked)."""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from afa_worker._gen.afa.v1 import afa_pb2 as pb

__all__ = ["MetricWindow", "ModelSelection"]


class MetricWindow:
    """Sums of CE, alignment term and correct predictions since the last step event, kept on the
    device so that a step never waits for it; read once per event."""

    def __init__(self, device: torch.device):
        self._device = device
        self._reset()
        self._last_loss = float("nan")

    def _reset(self) -> None:
        self.ce = torch.zeros((), device=self._device)
        self.reg = torch.zeros((), device=self._device)
        self.correct = torch.zeros((), device=self._device, dtype=torch.long)
        self.seen = 0
        self.steps = 0
        self.started = time.perf_counter()

    def add(self, ce: torch.Tensor, reg: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.ce += ce
        self.reg += reg
        self.correct += (logits.argmax(1) == labels).sum()
        self.seen += len(labels)
        self.steps += 1

    def flush(self, step: int, lr: float) -> pb.StepMetrics:
        """The window's means as a step event; starts the next window."""
        elapsed = max(1e-9, time.perf_counter() - self.started)
        ce, reg = float(self.ce) / self.steps, float(self.reg) / self.steps
        self._last_loss = ce + reg
        metrics = pb.StepMetrics(step=step, ce_loss=ce, reg_loss=reg, total_loss=ce + reg, lr=lr,
                                 train_accuracy=float(self.correct) / max(1, self.seen),
                                 images_per_second=self.seen / elapsed)
        self._reset()
        return metrics

    @property
    def last_loss(self) -> float:
        """Mean training loss of the open window, else of the last one flushed (NaN before any)."""
        if self.steps:
            return (float(self.ce) + float(self.reg)) / self.steps
        return self._last_loss


class ModelSelection:
    """Tracks the best validation accuracy of a stage and, when ``keep_best``, that step's weights."""

    def __init__(self, model: nn.Module, keep_best: bool):
        self._model = model
        self._keep_best = keep_best
        self._best_state: dict[str, torch.Tensor] | None = None
        self.best_accuracy = -1.0
        self.best_step = 0
        self.last_eval: tuple[float, float] | None = None  # (loss, accuracy)

    def observe(self, step: int, loss: float, accuracy: float) -> bool:
        """Records an evaluation; True when it is the best so far."""
        self.last_eval = (loss, accuracy)
        if accuracy <= self.best_accuracy:
            return False
        self.best_accuracy, self.best_step = accuracy, step
        if self._keep_best:
            self._best_state = copy.deepcopy(self._model.state_dict())
        return True

    def restore(self) -> bool:
        """Loads the best step's weights into the model; False when there is nothing to restore."""
        if self._best_state is None:
            return False
        self._model.load_state_dict(self._best_state)
        return True
