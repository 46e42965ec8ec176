"""The servicer in-process over a real channel, the handshake, and health through shutdown."""

from __future__ import annotations

import io
import json
import threading

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from afa_worker import PROTOCOL_VERSION, __version__, channel
from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker._gen.grpc.health.v1 import health_pb2 as hpb
from afa_worker._gen.afa.v1 import afa_pb2_grpc as pbgrpc
from afa_worker.auth import authorized_channel
from afa_worker.contract import oneof_fields
from afa_worker.server import ServerOptions, WorkerServer
from afa_worker.status import DETAILS_KEY

SERVING = hpb.HealthCheckResponse.SERVING
NOT_SERVING = hpb.HealthCheckResponse.NOT_SERVING


def test_get_info_lists_versions_devices_and_choices(stub):
    info = stub.GetInfo(pb.GetInfoRequest())
    assert info.protocol_version == PROTOCOL_VERSION
    assert info.torch_version and info.python_version
    assert info.devices[0].kind == "cpu"
    assert info.cpu_threads == 1
    assert {"small_resnet", "resnet50", "resnet101", "mobilenet_v2"} <= set(info.backbones)
    assert list(info.regularizers) == oneof_fields(pb.Regularizer, "kind")
    assert list(info.datasets) == oneof_fields(pb.DataSpec, "dataset")
    assert info.active_sessions == 0


def _status_details(error: grpc.RpcError) -> status_pb2.Status:
    trailers = dict(error.trailing_metadata() or ())
    return status_pb2.Status.FromString(trailers[DETAILS_KEY])


def test_a_rejected_field_travels_as_structured_status_details(stub):
    bad = pb.CreateSessionRequest(backbone=pb.BackboneSpec(name="resnet7"), data=pb.DataSpec(mnist=pb.MnistData()))
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateSession(bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = _status_details(err.value)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and status.message == err.value.details()
    request, valid = error_details_pb2.BadRequest(), pb.ValidValues()
    assert status.details[0].Unpack(request) and status.details[1].Unpack(valid)
    assert [(v.field, v.description) for v in request.field_violations] == [("backbone.name", "unknown backbone 'resnet7'")]
    assert valid.field == "backbone.name" and list(valid.values[:2]) == ["small_resnet", "resnet18"]
    assert valid.total == len(valid.values)


def test_a_field_without_a_closed_set_has_no_valid_values(stub):
    stage = pb.StageSpec(iterations=0, batch_size=1, regularizer=pb.Regularizer(none=pb.NoRegularizer()),
                         optimizer=pb.OptimizerSpec(lr=0.1))
    with pytest.raises(grpc.RpcError) as err:
        list(stub.RunStage(pb.RunStageRequest(session_id="nope", stage=stage)))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # the session is looked up first
    session = stub.CreateSession(pb.CreateSessionRequest(backbone=pb.BackboneSpec(name="small_resnet", width=4),
                                                         data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=2)))
    with pytest.raises(grpc.RpcError) as err:
        list(stub.RunStage(pb.RunStageRequest(session_id=session.session_id, stage=stage)))
    status = _status_details(err.value)
    assert len(status.details) == 1
    request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(request)
    assert request.field_violations[0].field == "stage.iterations"


def test_ready_message_carries_port_version_and_protocol_as_one_channel_line(server):
    out = io.StringIO()
    channel.ready(out, serve=server.ready_detail())
    line = out.getvalue()
    assert line.startswith(channel.PREFIX) and line.endswith("\n") and line.count("\n") == 1
    body = json.loads(line[len(channel.PREFIX):])  # proto3 JSON: camelCase names, as the SDK reads them
    ready = body["ready"]
    assert ready["serve"]["port"] == server.port and ready["serve"]["host"] == "127.0.0.1"
    assert ready["protocol"] == PROTOCOL_VERSION and ready["version"] == __version__
    assert "token" in ready["serve"]  # the fixture's server made its own token: the handshake is how its client learns it


def test_unknown_session_is_not_found_and_worker_keeps_serving(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(pb.EvaluateRequest(session_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "session_id" in err.value.details()
    assert stub.GetInfo(pb.GetInfoRequest()).protocol_version == PROTOCOL_VERSION


def test_health_serving_then_not_serving_through_shutdown():
    srv = WorkerServer(ServerOptions(port=0, grace_seconds=1.0))
    from afa_worker._gen.grpc.health.v1 import health_pb2_grpc as hgrpc

    # Before start: NOT_SERVING is the initial state of every service.
    assert srv.health._status[""] == NOT_SERVING
    srv.start()
    with authorized_channel(f"127.0.0.1:{srv.port}", srv.options.token) as ch:
        health = hgrpc.HealthStub(ch)
        assert health.Check(hpb.HealthCheckRequest(service="")).status == SERVING
        assert health.Check(hpb.HealthCheckRequest(service="afa.v1.AfaWorker")).status == SERVING
        watch = health.Watch(hpb.HealthCheckRequest(service="afa.v1.AfaWorker"))
        seen = [next(watch).status]
        collector = threading.Thread(target=lambda: seen.extend(r.status for r in watch))
        collector.start()
        srv.shutdown()
        collector.join(timeout=10)
    assert seen[0] == SERVING
    assert NOT_SERVING in seen[1:], seen


def test_non_loopback_bind_requires_a_token():
    with pytest.raises(ValueError, match="pass a token"):
        WorkerServer(ServerOptions(host="0.0.0.0", port=0))


def test_a_worker_started_without_a_token_makes_one_and_requires_it_even_for_health():
    srv = WorkerServer(ServerOptions(port=0, grace_seconds=0.5))
    srv.start()
    try:
        handshake = {"token": srv.ready_detail().token}
        assert len(handshake["token"]) >= 40 and handshake["token"] == srv.options.token
        other = WorkerServer(ServerOptions(port=0))
        assert other.options.token != srv.options.token  # fresh per worker
        other.server.stop(0)
        from afa_worker._gen.grpc.health.v1 import health_pb2_grpc as hgrpc

        with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as bare:
            for call in (lambda: pbgrpc.AfaWorkerStub(bare).GetInfo(pb.GetInfoRequest()),
                         lambda: hgrpc.HealthStub(bare).Check(hpb.HealthCheckRequest(service="")),
                         lambda: next(hgrpc.HealthStub(bare).Watch(hpb.HealthCheckRequest(service="")))):
                with pytest.raises(grpc.RpcError) as err:
                    call()
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with authorized_channel(f"127.0.0.1:{srv.port}", handshake["token"]) as ch:
            assert hgrpc.HealthStub(ch).Check(hpb.HealthCheckRequest(service="")).status == SERVING
    finally:
        srv.shutdown()


def test_a_given_token_is_not_printed():
    srv = WorkerServer(ServerOptions(port=0, token="s3cret"))
    out = io.StringIO()
    channel.ready(out, serve=srv.ready_detail())
    assert "token" not in json.loads(out.getvalue()[len(channel.PREFIX):])["ready"]["serve"] and "s3cret" not in out.getvalue()


def test_token_is_required_on_every_call():
    srv = WorkerServer(ServerOptions(port=0, token="s3cret", grace_seconds=0.5))
    srv.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            from afa_worker._gen.afa.v1 import afa_pb2_grpc as pbgrpc

            stub = pbgrpc.AfaWorkerStub(ch)
            for metadata in [(), (("authorization", "Bearer wrong"),)]:
                with pytest.raises(grpc.RpcError) as err:
                    stub.GetInfo(pb.GetInfoRequest(), metadata=metadata)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ok = stub.GetInfo(pb.GetInfoRequest(), metadata=(("authorization", "Bearer s3cret"),))
            assert ok.protocol_version == PROTOCOL_VERSION
    finally:
        srv.shutdown()


def test_open_streams_are_bounded_and_unary_calls_still_answer(server):
    """Idle Health.Watch streams used to take all 8 server threads: GetInfo and Check then hung."""
    from afa_worker._gen.grpc.health.v1 import health_pb2_grpc as hgrpc
    from afa_worker.streams import MAX_STREAMS, MAX_STREAMS_PER_CLIENT

    address, token = f"127.0.0.1:{server.port}", server.options.token
    # own connection per channel (grpc shares one between channels to the same address otherwise)
    channels = [authorized_channel(address, token, [("grpc.use_local_subchannel_pool", 1)])
                for _ in range(MAX_STREAMS // MAX_STREAMS_PER_CLIENT + 1)]
    watches = []
    try:
        def watch(channel):
            call = hgrpc.HealthStub(channel).Watch(hpb.HealthCheckRequest(service=""), timeout=60)
            assert next(call).status == SERVING  # open: the first status has arrived
            watches.append(call)
            return call

        for channel in channels[:-1]:
            for _ in range(MAX_STREAMS_PER_CLIENT):
                watch(channel)
        assert server.streams.open_streams() == MAX_STREAMS
        # one more stream, from a client with slots of its own left: the worker's limit answers
        with pytest.raises(grpc.RpcError) as err:
            watch(channels[-1])
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in err.value.details()
        # with every stream slot taken, unary calls and health checks answer (deadline: a hang fails)
        probe = channels[-1]
        assert pbgrpc.AfaWorkerStub(probe).GetInfo(pb.GetInfoRequest(), timeout=10).protocol_version == PROTOCOL_VERSION
        assert hgrpc.HealthStub(probe).Check(hpb.HealthCheckRequest(service=""), timeout=10).status == SERVING
        # a stream that ends gives its slot back
        watches.pop().cancel()
        for _ in range(200):
            if server.streams.open_streams() < MAX_STREAMS:
                break
            threading.Event().wait(0.05)
        watch(channels[-1])
    finally:
        for call in watches:
            call.cancel()
        for channel in channels:
            channel.close()


def test_one_client_cannot_take_every_stream_slot(server):
    from afa_worker._gen.grpc.health.v1 import health_pb2_grpc as hgrpc
    from afa_worker.streams import MAX_STREAMS_PER_CLIENT

    with authorized_channel(f"127.0.0.1:{server.port}", server.options.token) as channel:
        calls = [hgrpc.HealthStub(channel).Watch(hpb.HealthCheckRequest(service="")) for _ in range(MAX_STREAMS_PER_CLIENT + 1)]
        try:
            outcomes = []
            for call in calls:
                try:
                    outcomes.append(next(call).status)
                except grpc.RpcError as err:
                    outcomes.append(err.code())
            assert outcomes.count(SERVING) == MAX_STREAMS_PER_CLIENT
            assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 1
        finally:
            for call in calls:
                call.cancel()
