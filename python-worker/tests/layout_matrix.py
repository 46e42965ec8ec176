"""Run by test_layout.py in a process of its own (a native crash must not take pytest with it):
every small ResNet width x input size x precision trains two AFA channel steps (source forward,
attention, target backward). Prints one line per combination before and after it runs, so a
crash's last line names the combination that killed the process."""

from __future__ import annotations

import sys
import tempfile
import threading

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.checkpoint import save_checkpoint
from afa_worker.runtime import configure_torch
from afa_worker.session import create_session
from afa_worker.stage_plan import parse_stage
from afa_worker.trainer import run_stage

WIDTHS = (4, 8, 16, 32)
SIZES = (28, 64, 128, 256)
PRECISIONS = {"fp32": pb.PRECISION_FP32, "bf16": pb.PRECISION_BF16}


def _data(size: int) -> pb.DataSpec:
    return pb.DataSpec(mnist=pb.MnistData(), labels_per_class=1, test_per_class=1, image_size=size, seed=0)


def main() -> int:
    configure_torch(1)
    stage = parse_stage(pb.StageSpec(
        name="matrix", regularizer=pb.Regularizer(afa_channel=pb.AfaChannel(alpha=0.01)),
        optimizer=pb.OptimizerSpec(kind=pb.OPTIMIZER_KIND_SGD, lr=0.01, momentum=0.9), iterations=2, batch_size=4,
        seed=0, no_stability_estimate=True))
    with tempfile.TemporaryDirectory() as tmp:
        for width in WIDTHS:
            backbone = pb.BackboneSpec(name="small_resnet", width=width)
            source = create_session(pb.CreateSessionRequest(backbone=backbone, data=_data(28), seed=1))
            weights, *_ = save_checkpoint(source.target, f"{tmp}/source-{width}", {})
            for size in SIZES:
                for name, precision in PRECISIONS.items():
                    print(f"start width {width} size {size} {name}", flush=True)
                    session = create_session(pb.CreateSessionRequest(backbone=backbone, data=_data(size), seed=0,
                                                                     source_weights=weights, precision=precision))
                    summary = list(run_stage(session, stage, threading.Event()))[-1].summary
                    assert summary.status == pb.STAGE_STATUS_COMPLETED, summary.message
                    print(f"done width {width} size {size} {name} {session.layout.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
