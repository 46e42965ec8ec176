"""Errors as gRPC statuses with structured details: a rejected field travels as the standard
``google.rpc.BadRequest`` (and ``afa.v1.ValidValues`` for a closed set) in the status details, so
clients read ``field`` and ``valid`` from data, never by parsing the message."""

from __future__ import annotations

import grpc
from google.protobuf.any_pb2 import Any as AnyMessage
from google.rpc import error_details_pb2, status_pb2

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.errors import SpecError

__all__ = ["abort_invalid_argument", "MAX_VALID_VALUES", "DETAILS_KEY"]

DETAILS_KEY = "grpc-status-details-bin"
#: Values listed in ValidValues; deep backbones have hundreds of module paths, and status details
#: travel in the trailers, whose size gRPC bounds (8 KiB by default in grpc-js).
MAX_VALID_VALUES = 200
_MAX_VALUE_CHARS = 200


def _packed(message) -> AnyMessage:
    packed = AnyMessage()
    packed.Pack(message)
    return packed


def spec_status(error: SpecError) -> status_pb2.Status:
    violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.problem)
    details = [_packed(error_details_pb2.BadRequest(field_violations=[violation]))]
    if error.valid is not None:
        values = [v[:_MAX_VALUE_CHARS] for v in error.valid[:MAX_VALID_VALUES]]
        details.append(_packed(pb.ValidValues(field=error.field, values=values, total=len(error.valid))))
    return status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=str(error), details=details)


def abort_invalid_argument(context: grpc.ServicerContext, error: SpecError) -> None:
    """Ends the call with INVALID_ARGUMENT, the message for people and the details for code."""
    status = spec_status(error)
    context.set_trailing_metadata(((DETAILS_KEY, status.SerializeToString()),))
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, status.message)
