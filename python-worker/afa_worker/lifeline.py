"""The SDK keeps a pipe on the stdin of every process it spawns (the worker, the Ray pool driver):
EOF there means the parent died, even by SIGKILL, and the child goes too."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

__all__ = ["watch_stdin"]


def watch_stdin(on_eof: Callable[[], None]) -> None:
    """Calls ``on_eof`` from a daemon thread when stdin reaches its end."""

    def watch() -> None:
        # os.read on the raw fd: a buffered sys.stdin reader in a daemon thread holds a lock that
        # aborts the interpreter at shutdown.
        try:
            while os.read(0, 4096):
                pass
        except (OSError, ValueError):
            pass
        on_eof()

    threading.Thread(target=watch, daemon=True, name="stdin-watch").start()
