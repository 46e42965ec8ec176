"""Cancellation of long work that is not a training step: data loading, BN recalibration, the
source feature cache and DELTA's probe. The RPC that started the work sets an event (the client
went away, CloseSession, shutdown); loops deep in the call stack check it through a context
variable, so no function between the two has to carry it. Inside one pass of a model, ``interruptible``
checks between its layers: at 224 px a forward of a batch takes seconds on a CPU and one
Hessian-vector product through ResNet-50 about 20 s, so checks between passes alone would leave a
cancel waiting that long."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn

__all__ = ["Cancelled", "cancellable", "check_cancelled", "interruptible"]

_current: ContextVar[threading.Event | None] = ContextVar("afa_cancel", default=None)


class Cancelled(Exception):
    """The work was cancelled (the client, CloseSession or the worker's shutdown)."""


@contextmanager
def cancellable(event: threading.Event) -> Iterator[None]:
    """Work inside the block stops at its next ``check_cancelled`` once ``event`` is set."""
    token = _current.set(event)
    try:
        yield
    finally:
        _current.reset(token)


def check_cancelled(doing: str) -> None:
    """Raises Cancelled, naming what was being done, when the current work has been cancelled."""
    event = _current.get()
    if event is not None and event.is_set():
        raise Cancelled(f"cancelled while {doing}")


@contextmanager
def interruptible(doing: str, *models: nn.Module) -> Iterator[None]:
    """Inside the block a cancel stops a pass of ``models`` between two layers, not at its end.

    A forward checks before every leaf module (a pre-hook each, removed on exit). A backward checks
    as autograd unpacks each tensor a node saved, which happens node by node in the double backward
    of a Hessian-vector product too (whose nodes no module hook sees); the pack hook keeps the
    tensor's data only (``detach``: what is saved is unchanged, and a saved output does not hold its
    own graph in a cycle). The event is taken here, not read in the hooks, because autograd may run
    a backward on its own threads, where the context variable is not set."""
    event = _current.get()
    if event is None:
        yield
        return

    def check(*_) -> None:
        if event.is_set():
            raise Cancelled(f"cancelled while {doing}")

    def unpack(saved: torch.Tensor) -> torch.Tensor:
        check()
        return saved

    leaves = {id(m): m for model in models if model is not None for m in model.modules() if next(m.children(), None) is None}
    handles = [m.register_forward_pre_hook(check) for m in leaves.values()]
    try:
        with torch.autograd.graph.saved_tensors_hooks(torch.Tensor.detach, unpack):
            yield
    finally:
        for handle in handles:
            handle.remove()
