"""Decoding throughput for the data-in benchmark: an ImageFolder decoded by the worker's own code
with one thread and with N (Pillow releases the GIL while it decodes), no cache. argv: folder,
image side, threads, rounds. Prints JSON: images/s per thread count (the quietest round each)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python-worker"))

from afa_worker.data.images import DecodeSpec, _decode_all, folder_set  # noqa: E402


def main() -> None:
    folder, side, threads, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    images = folder_set(folder, "root")
    spec = DecodeSpec(rgb=True, size=side)
    best: dict[int, float] = {}
    for _ in range(rounds):
        for n in (1, threads):  # interleaved: a disturbance hits both alike
            started = time.perf_counter()
            pairs, bad = _decode_all(images, spec, n, False, lambda *_: None)
            seconds = time.perf_counter() - started
            assert len(pairs) == len(images.entries) and not bad
            best[n] = min(best.get(n, float("inf")), seconds)
    print(json.dumps({"images": len(images.entries), "imagesPerSecond": {str(n): len(images.entries) / s for n, s in best.items()}}))


if __name__ == "__main__":
    main()
