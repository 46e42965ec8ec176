"""Bounds on open streaming calls (RunStage, Health.Watch, GetWeights, PutWeights). The sync gRPC server gives each
open stream a thread for its whole life, so idle Health.Watch streams or running stages could take
every thread and leave none for GetInfo, Health.Check or CreateSession. Streams past the bound
are refused at once with RESOURCE_EXHAUSTED; the thread pool keeps a reserve for unary calls."""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager

import grpc

__all__ = ["StreamLimiter", "MAX_STREAMS", "MAX_STREAMS_PER_CLIENT", "UNARY_RESERVE"]

MAX_STREAMS = 16
#: Per client connection (a peer address): one client cannot take every stream slot.
MAX_STREAMS_PER_CLIENT = 8
#: Threads kept for unary calls and health checks beyond the stream bound.
UNARY_RESERVE = 8


class StreamLimiter(grpc.ServerInterceptor):
    def __init__(self, max_streams: int = MAX_STREAMS, per_client: int = MAX_STREAMS_PER_CLIENT):
        self.max_streams, self.per_client = max_streams, per_client
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _acquire(self, peer: str) -> str | None:
        """None when a slot was taken, else why not."""
        with self._lock:
            total = sum(self._open.values())
            if total >= self.max_streams:
                return f"the worker has {total} open streams, its limit; close one (or cancel a stage) and retry"
            if self._open[peer] >= self.per_client:
                return f"this client has {self._open[peer]} open streams, the per-client limit"
            self._open[peer] += 1
            return None

    def _release(self, peer: str) -> None:
        with self._lock:
            self._open[peer] -= 1
            if self._open[peer] <= 0:
                del self._open[peer]

    def open_streams(self) -> int:
        with self._lock:
            return sum(self._open.values())

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.response_streaming == handler.request_streaming:
            return handler
        options = {"request_deserializer": handler.request_deserializer,
                   "response_serializer": handler.response_serializer}
        if handler.request_streaming:
            upload = handler.stream_unary

            def limited_upload(request_iterator, context):
                with self._slot(context):
                    return upload(request_iterator, context)

            return grpc.stream_unary_rpc_method_handler(limited_upload, **options)
        stream = handler.unary_stream

        def limited_stream(request, context):
            with self._slot(context):
                yield from stream(request, context)

        return grpc.unary_stream_rpc_method_handler(limited_stream, **options)

    @contextmanager
    def _slot(self, context):
        """Holds one stream slot for the call, or aborts it with RESOURCE_EXHAUSTED."""
        peer = context.peer()
        refused = self._acquire(peer)
        if refused is not None:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
        try:
            yield
        finally:
            self._release(peer)
