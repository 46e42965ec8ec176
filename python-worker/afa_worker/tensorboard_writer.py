"""``python -m afa_worker tensorboard --logdir DIR``: writes TensorBoard event files for the SDK.

The SDK sends ``tensorboard`` ProcessInput lines on stdin (see proto/afa/v1/process.proto and
afa_worker/channel.py); each names a run (a subdirectory of the log directory, e.g. one per sweep
trial) and carries scalars or an image. Events are written with torch's ``SummaryWriter`` (the
``tensorboard`` package's format), so TensorBoard, its event reader and anything else that reads
event files read them. The process ends when stdin closes, after flushing every run.

A writer must never cost a run its result: a line that is not a valid message, a name the file
system refuses, an image whose bytes do not fit its shape, each is skipped with a warning on
stderr, and the rest is written."""

from __future__ import annotations

import hashlib
import math
import os
import re
import sys
from typing import IO

from afa_worker import channel
from afa_worker._gen.afa.v1 import process_pb2 as pp

__all__ = ["main", "run_name", "serve_stdin", "MAX_NAME_BYTES"]

#: Runs open at once (each holds a file); a sweep writes to one run per trial.
MAX_OPEN_RUNS = 64
#: Bytes of a run's directory name: file systems allow 255 per path component; room for a suffix.
MAX_NAME_BYTES = 200
#: Warnings printed before the writer only counts them (a stream of bad lines must not flood the log).
MAX_WARNINGS = 20


def _cut_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def run_name(name: str) -> str:
    """A run's directory name: path separators and control characters replaced, never '.' or '..',
    at most MAX_NAME_BYTES bytes (a cut name keeps a hash of the whole one, so two long names that
    share their start stay two runs)."""
    cleaned = re.sub(r"[\x00-\x1f/\\]+", "_", name).strip() or "run"
    if cleaned in (".", ".."):
        cleaned = "_" + cleaned
    if len(cleaned.encode("utf-8")) <= MAX_NAME_BYTES:
        return cleaned
    digest = hashlib.sha256(name.encode("utf-8", errors="replace")).hexdigest()[:10]
    return f"{_cut_bytes(cleaned, MAX_NAME_BYTES - 11).rstrip()}~{digest}"


class _Runs:
    def __init__(self, logdir: str):
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (needs the tensorboard package)

        self._writer = SummaryWriter
        self._logdir = logdir
        self._open: dict[str, object] = {}

    def get(self, name: str):
        key = run_name(name)
        if key not in self._open:
            if len(self._open) >= MAX_OPEN_RUNS:  # close the oldest; a later event reopens it (appends)
                oldest = next(iter(self._open))
                self._open.pop(oldest).close()
            self._open[key] = self._writer(log_dir=os.path.join(self._logdir, key))
        return self._open[key]

    def close(self) -> None:
        for writer in self._open.values():
            writer.close()
        self._open.clear()


def _write(runs: _Runs, line: pp.TensorBoardLine) -> None:
    writer = runs.get(line.run)
    step = int(line.step)
    for tag, value in line.scalars.items():
        if not math.isfinite(value) and not math.isnan(value):
            value = math.copysign(3.4e38, value)  # TensorBoard stores float32
        writer.add_scalar(tag, float(value), step)
    if line.HasField("image"):
        import numpy as np  # noqa: PLC0415

        image = line.image
        pixels = np.frombuffer(image.rgb, dtype=np.uint8)
        if image.height == 0 or image.width == 0 or pixels.size != image.height * image.width * 3:
            raise ValueError(f"image {image.tag!r}: {pixels.size} bytes for {image.height}x{image.width}x3")
        writer.add_image(image.tag, pixels.reshape(image.height, image.width, 3), step, dataformats="HWC")


def serve_stdin(logdir: str, stdin: IO[str] | None = None, stdout: IO[str] | None = None,
                stderr: IO[str] | None = None) -> int:
    """Writes every valid line; returns the number of lines skipped (the exit code stays 0)."""
    err = stderr or sys.stderr
    try:
        runs = _Runs(logdir)
    except ImportError as exc:
        print(f"afa-worker tensorboard: {exc}: install the tensorboard package into this Python "
              "(`pip install tensorboard`, or `afa worker setup` again)", file=err)
        return -1
    channel.ready(stdout, tensorboard=pp.TensorBoardReady(logdir=logdir))  # the SDK waits for it before training
    skipped = 0

    def skip(problem: str) -> None:
        nonlocal skipped
        skipped += 1
        if skipped <= MAX_WARNINGS:
            print(f"afa-worker tensorboard: skipped {problem}", file=err, flush=True)

    try:
        for item in channel.inputs(stdin):
            if isinstance(item, channel.InputError):
                skip(str(item))
                continue
            if item.WhichOneof("input") != "tensorboard":
                skip(f"a {item.WhichOneof('input') or 'empty'} input (this process writes TensorBoard lines)")
                continue
            try:
                _write(runs, item.tensorboard)
            except (ValueError, OSError, TypeError, OverflowError) as exc:
                skip(f"a line of run {clip(item.tensorboard.run)!r}: {exc}")
    finally:
        runs.close()
    if skipped:
        print(f"afa-worker tensorboard: {skipped} line(s) skipped in all", file=err, flush=True)
    return skipped


def clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def main(logdir: str) -> int:
    os.makedirs(logdir, exist_ok=True)
    return 3 if serve_stdin(logdir) < 0 else 0
