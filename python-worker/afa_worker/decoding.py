"""Requests that do not decode are refused as INVALID_ARGUMENT naming ``request``, not INTERNAL.

grpc answers a request whose bytes are not a valid message with INTERNAL ("Exception deserializing
request!"), which reads as the worker's fault. This interceptor decodes leniently and lets the
method's handler refuse what did not decode, saying which message was expected."""

from __future__ import annotations

import grpc

__all__ = ["DecodeGuard"]


class _Undecodable:
    def __init__(self, error: Exception):
        self.error = error


def _lenient(deserialize):
    if deserialize is None:
        return None

    def decode(data: bytes):
        try:
            return deserialize(data)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is the client's bytes
            return _Undecodable(exc)

    return decode


def _message_name(deserialize) -> str:
    owner = getattr(deserialize, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return descriptor.full_name if descriptor is not None else "request"


def _refuse(context: grpc.ServicerContext, name: str, item: _Undecodable) -> None:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request: is not a valid {name} message ({str(item.error)[:200]})")


class DecodeGuard(grpc.ServerInterceptor):
    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        name = _message_name(handler.request_deserializer)
        options = {"request_deserializer": _lenient(handler.request_deserializer),
                   "response_serializer": handler.response_serializer}
        if handler.request_streaming:
            behaviour = handler.stream_stream or handler.stream_unary

            def checked(items, context):
                for item in items:
                    if isinstance(item, _Undecodable):
                        _refuse(context, name, item)
                    yield item

            if handler.stream_unary:
                return grpc.stream_unary_rpc_method_handler(lambda it, ctx: behaviour(checked(it, ctx), ctx), **options)
            return grpc.stream_stream_rpc_method_handler(lambda it, ctx: behaviour(checked(it, ctx), ctx), **options)
        if handler.unary_stream:
            stream = handler.unary_stream

            def streaming(request, context):
                if isinstance(request, _Undecodable):
                    _refuse(context, name, request)
                yield from stream(request, context)

            return grpc.unary_stream_rpc_method_handler(streaming, **options)
        unary = handler.unary_unary

        def single(request, context):
            if isinstance(request, _Undecodable):
                _refuse(context, name, request)
            return unary(request, context)

        return grpc.unary_unary_rpc_method_handler(single, **options)
