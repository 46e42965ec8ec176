"""The line channel to the SDK (see proto/afa/v1/process.proto), next to the stdin lifeline: every
process of this package the SDK spawns (serve, ray-pool, tensorboard) writes its messages with
``send`` (the first one ``ready``) and, where the SDK feeds it, reads ``inputs`` from stdin. A line
is "AFA " + the proto3 JSON form of the message, so the SDK tells ours from a library's prints."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from typing import IO

from google.protobuf import json_format

from afa_worker import PROTOCOL_VERSION, __version__
from afa_worker._gen.afa.v1 import process_pb2 as pp

__all__ = ["PREFIX", "MAX_INPUT_LINE", "send", "ready", "error", "inputs", "InputError"]

PREFIX = "AFA "
#: An input line longer than this is refused, not read: the SDK sends scalars and images of a few
#: hundred KB (a TensorBoard heat-map strip), never megabytes.
MAX_INPUT_LINE = 16 << 20

_lock = threading.Lock()


def send(message: pp.ProcessMessage, stream: IO[str] | None = None) -> None:
    """One message line, whole, even from several threads (the Ray pool's prober and main)."""
    line = PREFIX + json_format.MessageToJson(message, indent=None) + "\n"
    out = stream or sys.stdout
    with _lock:
        out.write(line)
        out.flush()


def ready(stream: IO[str] | None = None, **detail) -> None:
    """The first message: up, with this package's version and protocol and the command's detail
    (``serve=pp.ServeReady(...)``, ``ray_pool=...``, ``tensorboard=...``)."""
    send(pp.ProcessMessage(ready=pp.Ready(version=__version__, protocol=PROTOCOL_VERSION, pid=os.getpid(), **detail)),
         stream)


def error(message: str, stream: IO[str] | None = None) -> None:
    send(pp.ProcessMessage(error=pp.ProcessError(message=message)), stream)


class InputError(ValueError):
    """An input line that is not a ProcessInput (skipped by the reader, with its line number)."""

    def __init__(self, number: int, problem: str):
        super().__init__(f"input line {number}: {problem}")
        self.number = number


def inputs(stream: IO[str] | None = None) -> Iterator[pp.ProcessInput | InputError]:
    """ProcessInput messages from stdin until it closes; a line that is not one yields an
    InputError in its place (the caller warns and goes on: one bad line must not end the stream)."""
    source = stream or sys.stdin
    number = 0
    while True:
        line = source.readline(MAX_INPUT_LINE + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_INPUT_LINE:
            # The rest of an overlong line is read and dropped, so the next line starts clean.
            while line and not line.endswith("\n"):
                line = source.readline(MAX_INPUT_LINE + 1)
            yield InputError(number, f"longer than {MAX_INPUT_LINE} characters")
            continue
        text = line.strip()
        if not text:
            continue
        if not text.startswith(PREFIX.strip()):
            yield InputError(number, f"does not start with {PREFIX.strip()!r}")
            continue
        message = pp.ProcessInput()
        try:
            json_format.Parse(text[len(PREFIX.strip()):], message)
        except (json_format.ParseError, ValueError, RecursionError) as exc:
            yield InputError(number, str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
            continue
        yield message
