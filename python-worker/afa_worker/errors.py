"""Errors the servicer maps to gRPC status codes; each names the field and, where there is a
closed set, the valid values."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SpecError", "NotFoundError", "BusyError", "SourceMissingError", "clip"]

#: A problem quotes the bad value; a 1 MB name must not come back (or go to the log) whole.
MAX_PROBLEM_CHARS = 400


def clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _choices(valid: Iterable[str]) -> str:
    items = list(valid)
    if len(items) > 60:
        # Deep backbones have hundreds of modules; the head of the list still shows the naming.
        return ", ".join(items[:60]) + f", ... ({len(items)} in all)"
    return ", ".join(items)


class SpecError(ValueError):
    """A request field is invalid. Maps to INVALID_ARGUMENT."""

    def __init__(self, field: str, problem: str, valid: Iterable[str] | None = None, limit: int = MAX_PROBLEM_CHARS):
        self.field = field
        self.problem = clip(problem, limit)
        self.valid = list(valid) if valid is not None else None
        text = f"{field}: {self.problem}"
        if self.valid is not None:
            text += f" (valid: {_choices(self.valid)})"
        super().__init__(text)


class NotFoundError(LookupError):
    """An id does not name a live object. Maps to NOT_FOUND."""


class BusyError(RuntimeError):
    """The session is running a stage already. Maps to FAILED_PRECONDITION."""


class SourceMissingError(SpecError):
    """A regulariser needs a frozen source model and the session has none."""
