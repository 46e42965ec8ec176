"""``python -m afa_worker tensorboard --logdir DIR``: writes TensorBoard event files for the SDK.

The SDK sends one JSON object per line on stdin; each names a run (a subdirectory of the log
directory, e.g. one per sweep trial) and carries scalars or an image:

    {"run": "lr=0.01 seed=0", "step": 120, "scalars": {"accuracy/val": 0.61, "loss/val": 1.2}}
    {"run": "...", "step": 300, "image": {"tag": "attention/afa-spatial/layer1.0", "height": 112,
     "width": 448, "rgb": "<base64 of height*width*3 bytes>"}}

Events are written with torch's ``SummaryWriter`` (the ``tensorboard`` package's format), so
TensorBoard, its event reader and anything else that reads event files read them. The process ends
when stdin closes, after flushing every run."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from typing import IO

__all__ = ["main", "run_name", "READY"]

#: A line longer than this is refused: the SDK sends small scalars and images of a few hundred KB.
MAX_LINE = 16 << 20
#: Printed on stdout once the writer can write.
READY = "AFA_TENSORBOARD_READY"
#: Runs open at once (each holds a file); a sweep writes to one run per trial.
MAX_OPEN_RUNS = 64


def run_name(name: str) -> str:
    """A run's directory name: path separators and control characters replaced, never '.' or '..'."""
    cleaned = re.sub(r"[\x00-\x1f/\\]+", "_", name).strip() or "run"
    return "_" + cleaned if cleaned in (".", "..") else cleaned[:200]


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


def _write(runs: _Runs, message: dict) -> None:
    writer = runs.get(str(message["run"]))
    step = int(message.get("step", 0))
    for tag, value in (message.get("scalars") or {}).items():
        writer.add_scalar(str(tag), float(value), step)
    image = message.get("image")
    if image:
        import numpy as np  # noqa: PLC0415

        height, width = int(image["height"]), int(image["width"])
        pixels = np.frombuffer(base64.b64decode(image["rgb"]), dtype=np.uint8)
        if pixels.size != height * width * 3:
            raise ValueError(f"image {image.get('tag')}: {pixels.size} bytes for {height}x{width}x3")
        writer.add_image(str(image["tag"]), pixels.reshape(height, width, 3), step, dataformats="HWC")


def serve_stdin(logdir: str, stdin: IO[str] = sys.stdin) -> int:
    try:
        runs = _Runs(logdir)
    except ImportError as exc:
        print(f"afa-worker tensorboard: {exc}: install the tensorboard package into this Python "
              "(`pip install tensorboard`, or `afa worker setup` again)", file=sys.stderr)
        return 3
    print(READY, flush=True)  # the SDK waits for it before training, so a missing package fails at once
    bad = 0
    try:
        while line := stdin.readline(MAX_LINE):
            if not line.strip():
                continue
            try:
                _write(runs, json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                bad += 1
                print(f"afa-worker tensorboard: skipped a line: {exc}", file=sys.stderr)
    finally:
        runs.close()
    return 0 if not bad else 4


def main(logdir: str) -> int:
    os.makedirs(logdir, exist_ok=True)
    return serve_stdin(logdir)
