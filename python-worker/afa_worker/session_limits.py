"""Bounds on the sessions one worker holds: a count (each holds models and data, and a compute
thread), and idle expiry, so a client killed with SIGKILL does not leave its sessions allocated
for the worker's life. A session counts as used when a call names it and when a call on it ends; a
session whose lock is held (a stage running) is never expired."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

__all__ = ["SessionLimits", "TooManySessions", "MAX_SESSIONS", "SESSION_IDLE_SECONDS"]

#: Sessions at once, by default ($AFA_MAX_SESSIONS).
MAX_SESSIONS = 64
#: Seconds without a call after which a session is closed, by default ($AFA_SESSION_IDLE_SECONDS; 0: never).
SESSION_IDLE_SECONDS = 3600.0

_log = logging.getLogger("afa_worker")


class TooManySessions(RuntimeError):
    """The worker holds its limit of sessions (RESOURCE_EXHAUSTED)."""


def _env_number(name: str, default: float) -> float:
    text = os.environ.get(name, "")
    try:
        return float(text) if text else default
    except ValueError:
        _log.warning("$%s=%r is not a number: using %g", name, text, default)
        return default


class SessionLimits:
    def __init__(self, max_sessions: int | None = None, idle_seconds: float | None = None):
        self.max_sessions = int(max_sessions if max_sessions is not None else _env_number("AFA_MAX_SESSIONS", MAX_SESSIONS))
        self.idle_seconds = idle_seconds if idle_seconds is not None else _env_number("AFA_SESSION_IDLE_SECONDS", SESSION_IDLE_SECONDS)
        self._last_used: dict[str, float] = {}
        self._reserved = 0
        self._lock = threading.Lock()

    def reserve(self, open_now: int) -> None:
        """Claims room for one more session (released by ``admitted`` or ``abandoned``), or refuses."""
        with self._lock:
            if open_now + self._reserved >= self.max_sessions:
                raise TooManySessions(f"the worker holds {open_now + self._reserved} sessions, its limit "
                                      f"({self.max_sessions}, $AFA_MAX_SESSIONS): close one, or wait for idle ones to "
                                      f"expire after {self.idle_seconds:g} s")
            self._reserved += 1

    def admitted(self, session_id: str) -> None:
        with self._lock:
            self._reserved -= 1
            self._last_used[session_id] = time.monotonic()

    def abandoned(self) -> None:
        with self._lock:
            self._reserved -= 1

    def touch(self, session_id: str) -> None:
        with self._lock:
            if session_id in self._last_used:
                self._last_used[session_id] = time.monotonic()

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._last_used.pop(session_id, None)

    def idle(self, now: float | None = None) -> list[tuple[str, float]]:
        """Sessions unused for longer than the idle limit, with their idle seconds (none when it is 0)."""
        if self.idle_seconds <= 0:
            return []
        now = time.monotonic() if now is None else now
        with self._lock:
            return [(sid, now - t) for sid, t in self._last_used.items() if now - t > self.idle_seconds]

    def watch(self, expire: Callable[[], None], stop: threading.Event) -> threading.Thread | None:
        """A daemon thread calling ``expire`` every so often until ``stop`` is set (none when expiry is off)."""
        if self.idle_seconds <= 0:
            return None
        interval = max(0.05, min(60.0, self.idle_seconds / 4))

        def loop() -> None:
            while not stop.wait(interval):
                expire()

        thread = threading.Thread(target=loop, name="afa-session-expiry", daemon=True)
        thread.start()
        return thread
