"""Every count and size in the contract has an upper bound the worker checks before any work, so
a request cannot start work it cannot stop or memory without bound (the SDK checks the same table,
``ts-sdk/src/dsl/limits.ts``). Each field at its bound + 1 is INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import grpc
import pytest

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.limits import FLOAT32_MAX, LIMITS, max_threads


def _session_request(**data) -> pb.CreateSessionRequest:
    return pb.CreateSessionRequest(backbone=pb.BackboneSpec(name="small_resnet", width=4),
                                   data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=2, val_per_class=2, **data))


def _stage(**kw) -> pb.StageSpec:
    base = dict(name="s", regularizer=pb.Regularizer(none=pb.NoRegularizer()), optimizer=pb.OptimizerSpec(lr=0.01),
                iterations=2, batch_size=4)
    base.update(kw)
    return pb.StageSpec(**base)


def _over(limit: str) -> int:
    return LIMITS[limit] + 1


SESSION_CASES = {
    "backbone.width": lambda r: setattr(r.backbone, "width", _over("width")),
    "backbone.depth": lambda r: setattr(r.backbone, "depth", _over("depth")),
    "backbone.in_channels": lambda r: setattr(r.backbone, "in_channels", _over("in_channels")),
    "data.image_size": lambda r: setattr(r.data, "image_size", _over("image_size")),
    "data.classes": lambda r: r.data.classes.extend(range(_over("classes"))),
    "layers": lambda r: r.layers.extend(f"layer{i}" for i in range(_over("layers"))),
    "num_threads": lambda r: setattr(r, "num_threads", max_threads() + 1),
    "data.color": lambda r: setattr(r.data, "color", 7),
    "backbone.name": lambda r: setattr(r.backbone, "name", "x" * _over("name_chars")),
    "layers[0]": lambda r: r.layers.append("l" * _over("name_chars")),
    "source_weights": lambda r: setattr(r, "source_weights", "/" + "w" * LIMITS["path_chars"]),
    "data.mnist.directory": lambda r: setattr(r.data.mnist, "directory", "/" + "d" * LIMITS["path_chars"]),
    "spec_json": lambda r: setattr(r, "spec_json", '{"name": "' + "n" * (1 << 20) + '"}'),
}

STAGE_CASES = {
    "stage.iterations": _stage(iterations=_over("iterations")),
    "stage.batch_size": _stage(batch_size=_over("batch_size")),
    "stage.feature_cache_mb": _stage(feature_cache_mb=_over("feature_cache_mb")),
    "stage.attention_images": _stage(attention_images=_over("attention_images")),
    "stage.regularizer.afa_spatial.hidden": _stage(regularizer=pb.Regularizer(
        afa_spatial=pb.AfaSpatial(alpha=0.1, hidden=_over("hidden")))),
    "stage.regularizer.delta.head_iterations": _stage(regularizer=pb.Regularizer(
        delta=pb.Delta(alpha=0.1, head_iterations=_over("delta_head_iterations")))),
    "stage.regularizer.delta.ablation_batches": _stage(regularizer=pb.Regularizer(
        delta=pb.Delta(alpha=0.1, ablation_batches=_over("delta_ablation_batches")))),
    "stage.optimizer.lr": _stage(optimizer=pb.OptimizerSpec(lr=1e308)),
    "stage.name": _stage(name="s" * _over("name_chars")),
    "stage.regularizer.none.weight_decay": _stage(regularizer=pb.Regularizer(none=pb.NoRegularizer(weight_decay=1e39))),
    "stage.regularizer.delta.temperature": _stage(regularizer=pb.Regularizer(
        delta=pb.Delta(alpha=0.1, temperature=float("inf")))),
}


def _rejected(call) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details()


@pytest.mark.parametrize("field", list(SESSION_CASES))
def test_create_session_refuses_a_size_past_its_bound(stub, field):
    request = _session_request()
    SESSION_CASES[field](request)
    assert _rejected(lambda: stub.CreateSession(request)).startswith(f"{field}: ")
    assert stub.GetInfo(pb.GetInfoRequest()).active_sessions == 0


@pytest.fixture
def session_id(stub):
    return stub.CreateSession(_session_request()).session_id


@pytest.mark.parametrize("field", list(STAGE_CASES))
def test_run_stage_refuses_a_count_past_its_bound(stub, session_id, field):
    request = pb.RunStageRequest(session_id=session_id, stage=STAGE_CASES[field])
    assert _rejected(lambda: list(stub.RunStage(request))).startswith(f"{field}: ")


def test_evaluate_refuses_a_batch_past_its_bound(stub, session_id):
    request = pb.EvaluateRequest(session_id=session_id, split=pb.SPLIT_VAL, batch_size=_over("eval_batch_size"))
    assert _rejected(lambda: stub.Evaluate(request)).startswith("batch_size: ")


def test_each_bound_is_accepted_at_its_value(stub, session_id):
    # The bound itself passes validation (the stage is cancelled at once: only the check is under test).
    stage = _stage(iterations=LIMITS["iterations"], batch_size=4, optimizer=pb.OptimizerSpec(lr=FLOAT32_MAX))
    events = stub.RunStage(pb.RunStageRequest(session_id=session_id, stage=stage))
    assert next(events).WhichOneof("event") == "started"
    events.cancel()
