"""Cancellation of long work that is not a training step: data loading, BN recalibration, the
source feature cache and DELTA's probe. The RPC that started the work sets an event (the client
went away, CloseSession, shutdown); loops deep in the call stack check it through a context
variable, so no function between the two has to carry it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["Cancelled", "cancellable", "check_cancelled"]

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
