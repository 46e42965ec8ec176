"""Bounds on open streaming calls. The sync gRPC server gives each open stream a thread for its whole
life, so idle Health.Watch streams, running stages or stalled uploads could take every thread and
leave none for GetInfo, Health.Check or CreateSession. Two budgets, so one kind cannot starve the
other: server streams (RunStage, OpenSession, Health.Watch, GetWeights) and uploads (PutWeights,
PutDataset), each with a per-client share. Streams past a bound are refused at once with
RESOURCE_EXHAUSTED; the thread pool keeps a reserve for unary calls. An upload that sends nothing
for UPLOAD_IDLE_SECONDS is cancelled, so a client that stalls after one chunk holds nothing for long."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

__all__ = ["StreamLimiter", "MAX_STREAMS", "MAX_STREAMS_PER_CLIENT", "MAX_UPLOADS", "MAX_UPLOADS_PER_CLIENT", "UNARY_RESERVE",
           "UPLOAD_IDLE_SECONDS", "idle_limited"]

MAX_STREAMS = 16
#: Per client connection (a peer address): one client cannot take every stream slot.
MAX_STREAMS_PER_CLIENT = 8
MAX_UPLOADS = 4
MAX_UPLOADS_PER_CLIENT = 2
#: Threads kept for unary calls and health checks beyond the stream bounds.
UNARY_RESERVE = 8
#: Seconds an upload may go without a chunk before it is cancelled.
UPLOAD_IDLE_SECONDS = 30.0

_log = logging.getLogger("afa_worker")


class _Budget:
    def __init__(self, what: str, total: int, per_client: int):
        self.what, self.total, self.per_client = what, total, per_client
        self.open: Counter[str] = Counter()

    def acquire(self, peer: str) -> str | None:
        """None when a slot was taken, else why not (the caller holds the limiter's lock)."""
        total = sum(self.open.values())
        if total >= self.total:
            return f"the worker has {total} open {self.what}, its limit; close one (or cancel a stage) and retry"
        if self.open[peer] >= self.per_client:
            # The SDK reads " open uploads" in these refusals as "wait and retry" (run/weights.ts).
            return f"this client has {self.open[peer]} open {self.what}, the per-client limit"
        self.open[peer] += 1
        return None

    def release(self, peer: str) -> None:
        self.open[peer] -= 1
        if self.open[peer] <= 0:
            del self.open[peer]


class StreamLimiter(grpc.ServerInterceptor):
    def __init__(self, max_streams: int = MAX_STREAMS, per_client: int = MAX_STREAMS_PER_CLIENT,
                 max_uploads: int = MAX_UPLOADS, uploads_per_client: int = MAX_UPLOADS_PER_CLIENT):
        self._streams = _Budget("streams", max_streams, per_client)
        self._uploads = _Budget("uploads", max_uploads, uploads_per_client)
        self._lock = threading.Lock()

    def open_streams(self) -> int:
        with self._lock:
            return sum(self._streams.open.values()) + sum(self._uploads.open.values())

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.response_streaming == handler.request_streaming:
            return handler
        options = {"request_deserializer": handler.request_deserializer,
                   "response_serializer": handler.response_serializer}
        if handler.request_streaming:
            upload = handler.stream_unary

            def limited_upload(request_iterator, context):
                with self._slot(context, self._uploads):
                    return upload(request_iterator, context)

            return grpc.stream_unary_rpc_method_handler(limited_upload, **options)
        stream = handler.unary_stream

        def limited_stream(request, context):
            with self._slot(context, self._streams):
                yield from stream(request, context)

        return grpc.unary_stream_rpc_method_handler(limited_stream, **options)

    @contextmanager
    def _slot(self, context, budget: _Budget):
        """Holds one slot of the budget for the call, or aborts it with RESOURCE_EXHAUSTED."""
        peer = context.peer()
        with self._lock:
            refused = budget.acquire(peer)
        if refused is not None:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
        try:
            yield
        finally:
            with self._lock:
                budget.release(peer)


def idle_limited(items: Iterator, context: grpc.ServicerContext, seconds: float) -> Iterator:
    """The client's stream, cancelled when it sends nothing for ``seconds`` (the next read then fails)."""
    timer: list[threading.Timer] = []

    def expire() -> None:
        _log.warning("an upload from %s sent nothing for %g s: cancelled", context.peer(), seconds)
        context.cancel()

    def arm() -> None:
        for t in timer:
            t.cancel()
        timer[:] = [threading.Timer(seconds, expire)]
        timer[0].daemon = True
        timer[0].start()

    arm()
    try:
        for item in items:
            arm()
            yield item
    finally:
        for t in timer:
            t.cancel()
