"""A long-lived thread per session for all of that session's torch work.

gRPC serves each call on whichever thread of its pool is free. Torch work that hops between threads
runs slower than on one: each thread has its own OpenMP team and malloc arena, so buffers and
kernels go cold between calls. Measured here, a 100-step stage took 9-26 % longer when session
creation and stages landed on a pool of 8 threads than on one thread (a fresh thread per session
was as fast as one thread), which is how the worker's stages came to be ~9 % slower than the same
stage run in-process. The RPC threads therefore only wait; a session's calls run on its own thread
in arrival order (a closed session's thread serves the next one, warm), and different sessions
still run side by side."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextvars import ContextVar
from typing import TypeVar

__all__ = ["ComputeThread", "emit_now"]

T = TypeVar("T")

#: While a stream's iterator runs: hands an item to the reader ahead of the iterator's next one.
_side_channel: ContextVar[Callable[[object], bool] | None] = ContextVar("afa_stream_side_channel", default=None)


def emit_now(item: object) -> bool:
    """From inside a ``ComputeThread.stream`` iterator: sends ``item`` to the reader at once, in
    order with the iterator's own items, from code that cannot yield (a phase deep in a call stack
    reporting progress). False outside a stream (or once the reader is gone): keep it for later."""
    offer = _side_channel.get()
    return offer(item) if offer is not None else False

#: Events buffered between the training loop and a slow reader before the loop waits for it.
EVENT_BUFFER = 256
_END = object()


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


class ComputeThread:
    def __init__(self, name: str = "afa-compute"):
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def close(self) -> None:
        """The thread ends once the jobs already queued are done."""
        self._jobs.put(None)

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Runs ``fn`` on the compute thread and returns its result (or raises its error)."""
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        future: Future[T] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
                future.set_exception(exc)

        self._jobs.put(job)
        return future.result()

    def stream(self, events: Callable[[], Iterator[T]], abandon: Callable[[], None]) -> Iterator[T]:
        """Iterates ``events()`` on the compute thread and yields its items here.

        The loop runs ahead of the reader by up to EVENT_BUFFER items, then waits for it. A reader
        that stops early calls ``abandon`` (e.g. cancels the stage) and the iterator is closed on
        the compute thread at its next item, so its cleanup runs there as it would in-process."""
        buffer: queue.Queue = queue.Queue(maxsize=EVENT_BUFFER)
        gone = threading.Event()

        def offer(item: object) -> bool:
            while not gone.is_set():
                try:
                    buffer.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def pump() -> None:
            token = _side_channel.set(offer)
            try:
                with contextlib.closing(events()) as items:
                    for item in items:
                        if not offer(item):
                            return
            except BaseException as exc:  # noqa: BLE001 - re-raised on the reader's side
                offer(_Raised(exc))
                return
            finally:
                _side_channel.reset(token)
            offer(_END)

        self._jobs.put(pump)
        finished = False
        try:
            while True:
                item = buffer.get()
                if item is _END:
                    finished = True
                    return
                if isinstance(item, _Raised):
                    finished = True
                    raise item.error
                yield item
        finally:
            if not finished:
                gone.set()
                abandon()
