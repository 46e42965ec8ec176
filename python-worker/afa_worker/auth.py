"""Bearer tokens: every worker requires one, loopback included (a shared GPU server has other
users, and any of them can reach 127.0.0.1). A worker started without a token makes its own and
prints it in its handshake; clients send ``authorization: Bearer <token>`` with every call."""

from __future__ import annotations

import collections
import secrets
from pathlib import Path

import grpc

__all__ = ["new_token", "read_token_file", "authorized_channel", "METADATA_KEY"]

METADATA_KEY = "authorization"


def new_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def read_token_file(path: str) -> str:
    """The first line of a token file (so the token need not appear on a command line)."""
    token = Path(path).read_text(encoding="utf-8").strip().splitlines()
    if not token or not token[0].strip():
        raise ValueError(f"token file {path} is empty")
    return token[0].strip()


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                           "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                   grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, token: str):
        self._entry = (METADATA_KEY, f"Bearer {token}")

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), self._entry]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._with_token(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._with_token(details), request_iterator)


def authorized_channel(address: str, token: str, options: list[tuple[str, object]] | None = None) -> grpc.Channel:
    """A plaintext channel whose every call carries the token (for loopback clients and tests)."""
    return grpc.intercept_channel(grpc.insecure_channel(address, options=options), _BearerToken(token))
