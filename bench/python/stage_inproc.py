"""Times one stage called in-process in the worker (no gRPC), for the SDK overhead benchmark.
Reads a JSON job on argv[1] (the CreateSession and StageSpec in proto JSON), prints JSON walls."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python-worker"))

from google.protobuf import json_format  # noqa: E402

from afa_worker._gen.afa.v1 import afa_pb2 as pb  # noqa: E402
from afa_worker.runtime import configure_torch  # noqa: E402
from afa_worker.session import create_session  # noqa: E402
from afa_worker.stage_plan import parse_stage  # noqa: E402
from afa_worker.trainer import run_stage  # noqa: E402

job = json.loads(Path(sys.argv[1]).read_text())
configure_torch(job["threads"])
request = json_format.ParseDict(job["session"], pb.CreateSessionRequest())
stage = json_format.ParseDict(job["stage"], pb.StageSpec())
# Warm-up: the first stage in a process pays one-time costs (optimizer imports, kernel setup) that a
# long-running worker has already paid.
warm = pb.StageSpec()
warm.CopyFrom(stage)
warm.iterations = 3
list(run_stage(create_session(request), parse_stage(warm), threading.Event()))
walls = []
for _ in range(job["repeats"]):
    session = create_session(request)
    start = time.perf_counter()
    events = list(run_stage(session, parse_stage(stage), threading.Event()))
    walls.append(time.perf_counter() - start)
print(json.dumps({"walls": walls, "steps": events[-1].summary.steps_completed}))
