"""Paths a request names, checked as text before the file system sees them: a NUL byte, a component
longer than NAME_MAX or a whole longer than PATH_MAX make the OS raise (ValueError, ENAMETOOLONG)
where a clear refusal belongs. Every path field of the contract goes through here."""

from __future__ import annotations

from afa_worker.errors import SpecError

__all__ = ["check_path_text", "NAME_MAX_BYTES", "PATH_MAX_BYTES"]

#: Bytes of one path component and of a whole path (Linux's NAME_MAX and PATH_MAX).
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 4096


def _bytes(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


def check_path_text(path: str, field: str, suffix_room: int = 0, error: type[SpecError] = SpecError) -> str:
    """``path`` when the file system can take it; else ``error`` naming ``field``. ``suffix_room``
    keeps that many bytes free in the last component (a suffix the worker appends)."""
    if "\0" in path:
        raise error(field, f"must not contain a NUL character (at position {path.index(chr(0))})")
    parts = path.split("/")
    for i, part in enumerate(parts):
        room = NAME_MAX_BYTES - (suffix_room if i == len(parts) - 1 else 0)
        if _bytes(part) > room:
            raise error(field, f"has a component of {_bytes(part)} bytes ({part[:40]!r}...); at most {room}")
    if _bytes(path) > PATH_MAX_BYTES:
        raise error(field, f"holds {_bytes(path)} bytes; at most {PATH_MAX_BYTES}")
    return path
