"""PyTorch eager, in-process, for the inference benchmark: the worker's own predict() on a checkpoint
(LoadModel's code path without gRPC). argv: checkpoint, images (raw uint8, N x 28 x 28), N, threads.
Prints JSON: batch-1 latencies (s) and batch-64 throughput (images/s)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python-worker"))

from afa_worker._gen.afa.v1 import afa_pb2 as pb  # noqa: E402
from afa_worker.inference import load_model, predict  # noqa: E402
from afa_worker.runtime import configure_torch  # noqa: E402
from afa_worker.session import resolve_device  # noqa: E402
from afa_worker.weight_store import WeightStore  # noqa: E402


def main() -> None:
    checkpoint, images_file, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    configure_torch(threads)
    session = load_model(pb.LoadModelRequest(path=checkpoint), WeightStore(), resolve_device)
    raw = Path(images_file).read_bytes()
    images = [pb.InputImage(raw=pb.RawImage(pixels=raw[i * 784:(i + 1) * 784], height=28, width=28, channels=1)) for i in range(n)]
    run = lambda batch: predict(session.target, session.card.transform, list(session.card.class_names), session.device,  # noqa: E731
                                session.precision, batch, 5, session.memory_format)
    for _ in range(10):
        run(images[:1])
    latencies = []
    for i in range(200):
        started = time.perf_counter()
        run(images[i % n:i % n + 1])
        latencies.append(time.perf_counter() - started)
    batch = images[:64]
    run(batch)
    started = time.perf_counter()
    for _ in range(20):
        run(batch)
    print(json.dumps({"latencies": latencies, "throughput": 20 * len(batch) / (time.perf_counter() - started)}))


if __name__ == "__main__":
    main()
