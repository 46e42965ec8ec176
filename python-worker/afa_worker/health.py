"""The standard grpc.health.v1 service (grpcio-health-checking is not in the offline mirror)."""

from __future__ import annotations

import threading

import grpc

from afa_worker._gen.grpc.health.v1 import health_pb2 as hpb
from afa_worker._gen.grpc.health.v1 import health_pb2_grpc as hgrpc

__all__ = ["HealthServicer", "SERVING", "NOT_SERVING"]

SERVING = hpb.HealthCheckResponse.SERVING
NOT_SERVING = hpb.HealthCheckResponse.NOT_SERVING


class HealthServicer(hgrpc.HealthServicer):
    """Statuses per service name; "" is the whole server. Watch streams every change."""

    def __init__(self, services: list[str]):
        self._status = {name: NOT_SERVING for name in ["", *services]}
        self._changed = threading.Condition()
        self._closed = False

    def set(self, service: str, status: int) -> None:
        with self._changed:
            self._status[service] = status
            self._changed.notify_all()

    def set_all(self, status: int) -> None:
        with self._changed:
            for name in self._status:
                self._status[name] = status
            self._changed.notify_all()

    def close(self) -> None:
        """Ends every Watch stream (server shutdown)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def Check(self, request, context):  # noqa: N802 - gRPC method name
        with self._changed:
            status = self._status.get(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return hpb.HealthCheckResponse(status=status)

    def Watch(self, request, context):  # noqa: N802 - gRPC method name
        last = None
        while context.is_active():
            with self._changed:
                status = self._status.get(request.service, hpb.HealthCheckResponse.SERVICE_UNKNOWN)
                if status == last and not self._closed:
                    self._changed.wait(timeout=0.5)
                    continue
                closed = self._closed
            if status != last:
                last = status
                yield hpb.HealthCheckResponse(status=status)
            if closed:
                return
