"""Long work that is not a training step stops when cancelled: DELTA's probe, data loading; and
CloseSession on a running stage cancels it instead of waiting for it to finish."""

from __future__ import annotations

import logging
import threading
import time

import grpc
import pytest

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.cancel import Cancelled, cancellable, check_cancelled


class _Seen(logging.Handler):
    """Sets an event when the worker logs a line containing ``text``."""

    def __init__(self, text: str):
        super().__init__()
        self.text, self.event, self.lines = text, threading.Event(), []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        if self.text in line:
            self.event.set()


@pytest.fixture
def seen():
    handlers = []

    def watch(text: str) -> _Seen:
        handler = _Seen(text)
        logging.getLogger("afa_worker").addHandler(handler)
        handlers.append(handler)
        return handler

    logging.getLogger("afa_worker").setLevel(logging.INFO)
    yield watch
    for handler in handlers:
        logging.getLogger("afa_worker").removeHandler(handler)


def test_check_cancelled_raises_only_inside_a_cancelled_block():
    event = threading.Event()
    check_cancelled("outside")  # no current work: nothing to cancel
    with cancellable(event):
        check_cancelled("not yet")
        event.set()
        with pytest.raises(Cancelled, match="cancelled while probing"):
            check_cancelled("probing")
    check_cancelled("after the block")


def test_close_session_cancels_a_stage_stuck_in_a_long_delta_probe(stub, source_weights_path, seen):
    session = stub.CreateSession(pb.CreateSessionRequest(
        backbone=pb.BackboneSpec(name="small_resnet", width=4), source_weights=source_weights_path,
        data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=5, val_per_class=2)))
    logged = seen("DELTA probe: 100000 head-only steps")
    stage = pb.StageSpec(name="delta", regularizer=pb.Regularizer(delta=pb.Delta(alpha=0.1, head_iterations=100_000)),
                         optimizer=pb.OptimizerSpec(lr=0.01), iterations=10, batch_size=8)
    events = stub.RunStage(pb.RunStageRequest(session_id=session.session_id, stage=stage))
    received, probing = [], threading.Event()

    def read() -> None:
        for event in events:
            received.append(event)
            if event.WhichOneof("event") == "progress" and event.progress.phase == "delta_probe":
                probing.set()

    reader = threading.Thread(target=read)
    reader.start()
    # the probe's start reaches the client as it happens (a progress event), and the worker's log says so
    assert probing.wait(120), received
    assert logged.event.wait(120), logged.lines
    started = time.perf_counter()
    stub.CloseSession(pb.CloseSessionRequest(session_id=session.session_id))  # returns once the stage stopped
    closed_after = time.perf_counter() - started
    reader.join(60)
    summary = received[-1].summary
    assert summary.status == pb.STAGE_STATUS_CANCELLED
    assert "cancelled while training DELTA's head-only probe" in summary.message
    # 100,000 probe steps take minutes; the cancel lands at the next one (generous bound for a loaded machine)
    assert closed_after < 10, closed_after
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(pb.EvaluateRequest(session_id=session.session_id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def source_weights_path(tmp_path_factory) -> str:
    from afa_worker.backbones import build_backbone
    from afa_worker.checkpoint import save_checkpoint

    model = build_backbone("small_resnet", num_classes=10, in_channels=1, width=4)
    path, *_ = save_checkpoint(model, str(tmp_path_factory.mktemp("src") / "w4"), {})
    return path
