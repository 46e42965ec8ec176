"""The phases before a stage's first step (batch-norm recalibration, DELTA's channel probe, the
stability estimate, the source feature cache), each reported as it runs and timed for the summary.

A long start must never be silent: on ResNet-101 at 224 px DELTA's probe ablates 3,840 channels and
the feature cache reads every training image through the source. The loops deep in the call stack
report through a context variable (as ``cancel`` does for cancellation), so no function between
the stage and the loop carries a callback; outside a recorded stage ``phase`` only times."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from afa_worker._gen.afa.v1 import afa_pb2 as pb

__all__ = ["PhaseLog", "PhaseTracker", "phase", "recording", "PROGRESS_INTERVAL"]

#: Seconds between progress events of one phase (its start and end are always sent).
PROGRESS_INTERVAL = 0.25


class PhaseLog:
    """Where a stage's phases go: each progress event to ``emit``, each duration to ``timings``."""

    def __init__(self, emit: Callable[[pb.Progress], None]):
        self.emit = emit
        self.timings: list[pb.PhaseTiming] = []


_current: ContextVar[PhaseLog | None] = ContextVar("afa_phases", default=None)


@contextmanager
def recording(log: PhaseLog) -> Iterator[PhaseLog]:
    """Phases run inside the block report to ``log``."""
    token = _current.set(log)
    try:
        yield log
    finally:
        _current.reset(token)


class PhaseTracker:
    """One running phase: ``advance`` as units finish; ``detail`` says what the summary should add."""

    def __init__(self, name: str, total: int, unit: str, log: PhaseLog | None):
        self.name, self.total, self.unit, self._log = name, int(total), unit, log
        self.done = 0
        self.detail = ""
        self.started = time.perf_counter()
        self._last = -PROGRESS_INTERVAL
        self._send(finished=False, force=True)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._send(finished=False, force=False)

    def _send(self, finished: bool, force: bool) -> None:
        if self._log is None:
            return
        seconds = self.seconds
        if not (force or finished or seconds - self._last >= PROGRESS_INTERVAL):
            return
        self._last = seconds
        self._log.emit(pb.Progress(phase=self.name, done=self.done, total=self.total, unit=self.unit,
                                   rate=self.done / max(seconds, 1e-9), seconds=seconds, finished=finished,
                                   detail=self.detail))

    def finish(self) -> pb.PhaseTiming:
        self._send(finished=True, force=True)
        timing = pb.PhaseTiming(phase=self.name, seconds=self.seconds, detail=self.detail)
        if self._log is not None:
            self._log.timings.append(timing)
        return timing


@contextmanager
def phase(name: str, total: int, unit: str) -> Iterator[PhaseTracker]:
    """A phase of ``total`` ``unit`` (0: not known in advance); timed even when it fails or is cancelled."""
    tracker = PhaseTracker(name, total, unit, _current.get())
    try:
        yield tracker
    except BaseException:
        if not tracker.detail:
            tracker.detail = f"stopped after {tracker.done} {unit}"
        raise
    finally:
        tracker.finish()
