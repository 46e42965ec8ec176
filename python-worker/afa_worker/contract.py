"""The contract names every kind: a proto oneof lists the regulariser kinds, the data sets and the
lr schedules. Each registry in the worker is checked against its oneof when it is imported, so a
kind added to the proto fails the import until the worker handles it."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message

__all__ = ["oneof_fields", "check_registry"]


def oneof_fields(message: type[Message], oneof: str) -> list[str]:
    """The field names of ``message``'s oneof, in proto order."""
    return [field.name for field in message.DESCRIPTOR.oneofs_by_name[oneof].fields]


def check_registry(registry: Mapping[str, object], message: type[Message], oneof: str) -> None:
    """Raises ImportError unless ``registry`` has exactly one entry per field of the oneof, in its order."""
    expected = oneof_fields(message, oneof)
    if list(registry) != expected:
        missing = [k for k in expected if k not in registry]
        extra = [k for k in registry if k not in expected]
        raise ImportError(f"{message.DESCRIPTOR.full_name}.{oneof} and the worker's registry differ: "
                          f"not handled {missing}, not in the proto {extra}, or out of order")
