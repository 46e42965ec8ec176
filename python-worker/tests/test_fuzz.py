"""Property-based fuzzing of the worker's entry points against a live server: generated
CreateSession / RunStage / Evaluate / SaveCheckpoint / Predict / LoadModel / ExportOnnx / HasWeights
messages (in bounds, at bounds, beyond, bad enums, odd text, NUL bytes) and random bytes sent as
any method's request. Invariants: never UNKNOWN or INTERNAL (nothing escapes as an unhandled
exception), every INVALID_ARGUMENT names a field (``field: problem``), and the worker serves
GetInfo after each input.

The count is small in `make test` ($AFA_FUZZ_EXAMPLES, default 40 per property); `make fuzz` runs
thousands and prints how many inputs each property tried (docs/reliability.md keeps the figures)."""

from __future__ import annotations

import os
import re

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker._gen.afa.v1 import afa_pb2_grpc as pbgrpc
from afa_worker.auth import authorized_channel
from afa_worker.server import ServerOptions, WorkerServer

EXAMPLES = int(os.environ.get("AFA_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("AFA_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

ALLOWED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
           grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.UNIMPLEMENTED}
FIELD = re.compile(r"^[a-z_][a-z0-9_]*(\[\d+\])?(\.[a-z_][a-z0-9_]*(\[\d+\])?)*: ", re.I)
TRIED: dict[str, int] = {}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    server = WorkerServer(ServerOptions(port=0, grace_seconds=1.0, weight_store_dir=str(root / "store"), checkpoint_dir=str(root / "ckpt")))
    server.start()
    with authorized_channel(f"127.0.0.1:{server.port}", server.options.token) as channel:
        stub = pbgrpc.AfaWorkerStub(channel)
        session = stub.CreateSession(pb.CreateSessionRequest(backbone=pb.BackboneSpec(name="small_resnet", width=4), seed=0,
                                                             data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=2, val_per_class=1)))
        yield stub, channel, session.session_id
    server.shutdown()
    if os.environ.get("AFA_FUZZ_REPORT"):
        with open(os.environ["AFA_FUZZ_REPORT"], "a") as fh:
            for name, count in sorted(TRIED.items()):
                fh.write(f"{name} {count}\n")


def _check(stub, name: str, call) -> None:
    """One input: an answer or an allowed refusal; a refusal of a field names it; the worker still serves."""
    TRIED[name] = TRIED.get(name, 0) + 1
    try:
        result = call()
        if hasattr(result, "__iter__") and not isinstance(result, (bytes, str)):
            for _ in result:
                pass
    except grpc.RpcError as exc:
        assert exc.code() in ALLOWED, f"{name}: {exc.code()} {exc.details()}"
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            assert FIELD.match(exc.details() or ""), f"{name}: INVALID_ARGUMENT without a field: {exc.details()!r}"
    assert stub.GetInfo(pb.GetInfoRequest(), timeout=30).protocol_version


# Numbers: small valid ones, the bounds, just past them, and far past (uint32 / uint64 ends).
COUNTS = st.sampled_from([0, 1, 2, 3, 7, 28, 64, 100, 1024, 1025, 4096, 4097, 65536, 100_001, 2**31 - 1, 2**32 - 1])
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.0, 1e-6, 0.01, 1.0, 1e38, 3.5e38, 1e308]))
TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["", "..", "/", "\x00", "a\x00b", "layer1.0", "fc", "conv1", "x" * 300,
                                                        "/etc/passwd", "../../escape", "学" * 100, "small_resnet", "resnet18"]))
ENUMS = st.integers(min_value=-3, max_value=9)
SHA = st.one_of(st.text(alphabet="0123456789abcdef", min_size=0, max_size=70), st.just("0" * 64), st.just("a" * 64 + "\n"))


@st.composite
def data_specs(draw) -> pb.DataSpec:
    which = draw(st.sampled_from(["mnist", "fashion_mnist", "image_folder", "packed", "none"]))
    spec = pb.DataSpec(labels_per_class=draw(st.sampled_from([0, 1, 2, 5, 6000, 100_000, 2**32 - 1])),
                       val_per_class=draw(st.sampled_from([0, 1, 2, 7000, 2**32 - 1])),
                       test_per_class=draw(st.sampled_from([0, 1, 5, 2**32 - 1])),
                       image_size=draw(st.sampled_from([0, 1, 8, 28, 33, 1024, 1025, 2**32 - 1])),
                       color=draw(ENUMS), crop=draw(st.sampled_from([0, 1, 8, 28, 29, 2**32 - 1])),
                       resize_mode=draw(ENUMS), seed=draw(COUNTS), augment=draw(st.booleans()),
                       classes=draw(st.lists(st.sampled_from([0, 1, 9, 10, 12, 2**32 - 1]), max_size=4)))
    if which == "mnist":
        spec.mnist.directory = draw(st.sampled_from(["", "/nonexistent", "/etc", "\x00"]))
    elif which == "fashion_mnist":
        spec.fashion_mnist.directory = draw(st.sampled_from(["", "/nonexistent", "/tmp"]))
    elif which == "image_folder":
        spec.image_folder.root = draw(TEXT)
    elif which == "packed":
        spec.packed.sha256 = draw(SHA)
    return spec


@st.composite
def session_requests(draw) -> pb.CreateSessionRequest:
    # Widths past 64 are cheap to refuse but slow to build when in bounds: in-bounds widths stay small.
    return pb.CreateSessionRequest(
        backbone=pb.BackboneSpec(name=draw(st.one_of(TEXT, st.sampled_from(["small_resnet", "resnet18", "torchvision:nope", "timm:"]))),
                                 width=draw(st.sampled_from([0, 1, 4, 1025, 2**32 - 1])), depth=draw(st.sampled_from([0, 1, 65, 2**32 - 1])),
                                 in_channels=draw(st.sampled_from([0, 1, 3, 65, 2**32 - 1]))),
        data=draw(data_specs()), seed=draw(COUNTS), layers=draw(st.lists(TEXT, max_size=3)),
        source_weights=draw(st.sampled_from(["", "/etc/passwd", "/nonexistent.safetensors", "\x00"])),
        source_weights_sha256=draw(st.one_of(st.just(""), SHA)), device=draw(st.sampled_from(["", "cpu", "cuda", "cuda:7", "mps", "\x00", "x" * 300])),
        precision=draw(ENUMS), num_threads=draw(st.sampled_from([0, 1, 1024, 2**32 - 1])),
        spec_json=draw(st.sampled_from(["", "{}", "[]", "not json", '{"a": ' * 1000, "{\"name\": \"\x00\"}"])),
        no_source=draw(st.booleans()))


@st.composite
def stages(draw) -> pb.StageSpec:
    kind = draw(st.sampled_from(["none", "l2fe", "l2sp", "feature_map", "delta", "afa_spatial", "afa_channel", "unset"]))
    regularizer = pb.Regularizer()
    alpha = draw(FLOATS)
    if kind == "none":
        regularizer.none.weight_decay = draw(FLOATS)
    elif kind == "delta":
        regularizer.delta.CopyFrom(pb.Delta(alpha=alpha, head_iterations=draw(st.sampled_from([0, 1, 100_001])),
                                            ablation_batches=draw(st.sampled_from([0, 1, 65])), temperature=draw(FLOATS)))
    elif kind == "afa_spatial":
        regularizer.afa_spatial.CopyFrom(pb.AfaSpatial(alpha=alpha, hidden=draw(st.sampled_from([0, 1, 4097]))))
    elif kind == "afa_channel":
        regularizer.afa_channel.CopyFrom(pb.AfaChannel(alpha=alpha, hidden=draw(st.sampled_from([0, 1, 4097])), uniform_floor=draw(FLOATS)))
    elif kind == "l2fe":
        regularizer.l2fe.SetInParent()
    elif kind != "unset":
        getattr(regularizer, kind).alpha = alpha
    return pb.StageSpec(
        name=draw(TEXT), regularizer=regularizer,
        optimizer=pb.OptimizerSpec(kind=draw(ENUMS), lr=draw(FLOATS), momentum=draw(FLOATS), weight_decay=draw(FLOATS)),
        # Iterations in bounds are kept to a few steps (a long valid stage is not an error, only slow).
        iterations=draw(st.sampled_from([0, 1, 2, 100_000_001, 2**32 - 1])), batch_size=draw(st.sampled_from([0, 1, 4, 4097, 2**32 - 1])),
        eval_every=draw(st.sampled_from([0, 1, 2**32 - 1])), log_every=draw(st.sampled_from([0, 1, 2**32 - 1])),
        head_l2=draw(FLOATS), feature_cache_mb=draw(st.sampled_from([0, 1, 2**20 + 1])),
        attention_images=draw(st.sampled_from([0, 1, 16, 17])), seed=draw(COUNTS), no_stability_estimate=draw(st.booleans()),
        restore_best=draw(st.booleans()), measure_drift=draw(st.booleans()))


def _close_if_made(stub, response) -> None:
    sid = getattr(response, "session_id", "")
    if sid:
        stub.CloseSession(pb.CloseSessionRequest(session_id=sid))


@FUZZ
@given(request=session_requests())
def test_create_session_never_fails_unhandled(live, request):
    stub, _, _ = live

    def call():
        _close_if_made(stub, stub.CreateSession(request, timeout=120))

    _check(stub, "CreateSession", call)


@FUZZ
@given(stage=stages(), known=st.booleans())
def test_run_stage_never_fails_unhandled(live, stage, known):
    stub, _, session_id = live
    _check(stub, "RunStage", lambda: stub.RunStage(pb.RunStageRequest(session_id=session_id if known else "nope", stage=stage), timeout=120))


@FUZZ
@given(split=ENUMS, batch=COUNTS, path=TEXT, store=st.booleans(), metric=FLOATS)
def test_evaluate_and_save_checkpoint_never_fail_unhandled(live, split, batch, path, store, metric):
    stub, _, session_id = live
    _check(stub, "Evaluate", lambda: stub.Evaluate(pb.EvaluateRequest(session_id=session_id, split=split, batch_size=batch)))
    _check(stub, "SaveCheckpoint", lambda: stub.SaveCheckpoint(pb.SaveCheckpointRequest(
        session_id=session_id, path=path, to_weight_store=store, best_val_accuracy=metric, spec_hash=path[:20])))


@st.composite
def input_images(draw) -> pb.InputImage:
    if draw(st.booleans()):
        return pb.InputImage(encoded=draw(st.one_of(st.binary(max_size=64), st.just(b"\x89PNG\r\n\x1a\n" + bytes(40)))))
    h, w, c = draw(COUNTS), draw(COUNTS), draw(st.sampled_from([0, 1, 2, 3, 4, 5]))
    size = min(h * w * c, 4096) if draw(st.booleans()) else draw(st.integers(min_value=0, max_value=64))
    return pb.InputImage(raw=pb.RawImage(pixels=bytes(size), height=h, width=w, channels=c))


@FUZZ
@given(images=st.lists(input_images(), max_size=3), top_k=COUNTS, opset=st.sampled_from([0, 1, 17, 18, 24, 2**32 - 1]), path=TEXT,
       sha=SHA, device=st.sampled_from(["", "cpu", "cuda:3", "\x00"]), precision=ENUMS)
def test_model_out_calls_never_fail_unhandled(live, images, top_k, opset, path, sha, device, precision):
    stub, _, session_id = live
    _check(stub, "Predict", lambda: stub.Predict(pb.PredictRequest(session_id=session_id, images=images, top_k=top_k)))
    _check(stub, "ExportOnnx", lambda: stub.ExportOnnx(pb.ExportOnnxRequest(session_id="nope" if images else session_id, opset=opset,
                                                                              check_images=images)))
    _check(stub, "LoadModel", lambda: _close_if_made(stub, stub.LoadModel(pb.LoadModelRequest(path=path, device=device, precision=precision))))
    _check(stub, "LoadModel", lambda: _close_if_made(stub, stub.LoadModel(pb.LoadModelRequest(sha256=sha))))
    _check(stub, "HasWeights", lambda: stub.HasWeights(pb.HasWeightsRequest(sha256=sha)))
    _check(stub, "HasDataset", lambda: stub.HasDataset(pb.HasWeightsRequest(sha256=sha)))


METHODS = ["GetInfo", "CreateSession", "RunStage", "Evaluate", "PromoteTargetToSource", "SaveCheckpoint", "CloseSession", "HasWeights",
           "GetWeights", "LoadModel", "Predict", "ExportOnnx", "HasDataset", "OpenSession"]
STREAMING = {"RunStage", "GetWeights", "OpenSession"}


@FUZZ
@given(method=st.sampled_from(METHODS), payload=st.binary(max_size=200))
def test_random_bytes_as_any_request_never_fail_unhandled(live, method, payload):
    stub, channel, _ = live
    path = f"/afa.v1.AfaWorker/{method}"
    call = (channel.unary_stream if method in STREAMING else channel.unary_unary)(path, request_serializer=None, response_deserializer=None)
    _check(stub, f"bytes:{method}", lambda: call(payload, timeout=60))
