"""Sessions are bounded: past the worker's limit CreateSession is RESOURCE_EXHAUSTED naming it (and
a refused or failed creation does not use up room); a session no call has used for the idle limit
is closed (logged), one running a stage is not, and a call refreshes the clock."""

from __future__ import annotations

import logging
import threading
import time

import grpc
import pytest

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker._gen.afa.v1 import afa_pb2_grpc as pbgrpc
from afa_worker.auth import authorized_channel
from afa_worker.server import ServerOptions, WorkerServer


def _request(labels_per_class: int = 2) -> pb.CreateSessionRequest:
    return pb.CreateSessionRequest(backbone=pb.BackboneSpec(name="small_resnet", width=4), seed=0,
                                   data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=labels_per_class))


@pytest.fixture
def limited(tmp_path):
    srv = WorkerServer(ServerOptions(port=0, grace_seconds=1.0, weight_store_dir=str(tmp_path / "store"), max_sessions=3,
                                     session_idle_seconds=0))  # expiry driven by the test, not a clock
    srv.start()
    with authorized_channel(f"127.0.0.1:{srv.port}", srv.options.token) as ch:
        yield srv, pbgrpc.AfaWorkerStub(ch)
    srv.shutdown()


def test_past_the_limit_create_session_is_resource_exhausted_and_a_failed_creation_takes_no_room(limited):
    _, stub = limited
    with pytest.raises(grpc.RpcError) as bad:
        stub.CreateSession(_request(labels_per_class=100_000))  # refused by the data: must not hold a place
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ids = [stub.CreateSession(_request()).session_id for _ in range(3)]
    with pytest.raises(grpc.RpcError) as full:
        stub.CreateSession(_request())
    assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "the worker holds 3 sessions, its limit (3, $AFA_MAX_SESSIONS)" in full.value.details()
    stub.CloseSession(pb.CloseSessionRequest(session_id=ids[0]))
    ids[0] = stub.CreateSession(_request()).session_id  # room again
    assert stub.GetInfo(pb.GetInfoRequest()).active_sessions == 3


def test_an_idle_session_is_closed_and_logged_a_used_or_running_one_is_not(limited, caplog):
    srv, stub = limited
    servicer = srv.servicer
    servicer.limits.idle_seconds = 60.0
    idle, used, running = (stub.CreateSession(_request()).session_id for _ in range(3))
    for sid in (idle, used, running):  # as if they had been unused for two minutes
        servicer.limits._last_used[sid] -= 120
    stub.Evaluate(pb.EvaluateRequest(session_id=used, split=pb.SPLIT_TRAIN))  # a call: its clock starts again
    servicer._sessions[running].lock.acquire()  # as a running stage holds it
    try:
        with caplog.at_level(logging.INFO, logger="afa_worker"):
            assert servicer.expire_idle() == [idle]
    finally:
        servicer._sessions[running].lock.release()
    assert any(f"session {idle[:8]}: closed after 120 s without a call" in r.getMessage() for r in caplog.records)
    with pytest.raises(grpc.RpcError) as gone:
        stub.Evaluate(pb.EvaluateRequest(session_id=idle, split=pb.SPLIT_TRAIN))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND and "idle limit" in gone.value.details()
    assert stub.GetInfo(pb.GetInfoRequest()).active_sessions == 2


def test_the_expiry_thread_closes_sessions_of_a_client_that_went_away(tmp_path):
    srv = WorkerServer(ServerOptions(port=0, grace_seconds=1.0, weight_store_dir=str(tmp_path / "store"), session_idle_seconds=0.2))
    srv.start()
    try:
        with authorized_channel(f"127.0.0.1:{srv.port}", srv.options.token) as ch:
            pbgrpc.AfaWorkerStub(ch).CreateSession(_request())
        # The client is gone (its channel closed, nothing closed the session): the expiry thread does.
        closed = threading.Event()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not closed.is_set():
            if not srv.servicer._sessions:
                closed.set()
            closed.wait(0.05)
        assert closed.is_set()
    finally:
        srv.shutdown()
