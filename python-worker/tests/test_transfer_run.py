"""A short real run over gRPC: pretrain a small source on Fashion-MNIST, save it, and transfer to
MNIST with 10 labels per class with every regulariser (and the AFA two-stage schedule). Every run
must finish, stream metrics, and beat chance (10 %) on test by a wide margin (2.5x: a frozen
Fashion-MNIST extractor, L2-FE, reaches only about 30 % on digits at this width)."""

from __future__ import annotations

import pytest

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.regularizers import REGULARIZERS

WIDTH = 8
CHANCE = 0.10
MARGIN = 2.5

# Settings per kind that leave each method well above chance; a kind added to the worker's
# registry fails test_every_kind_has_settings until it has its own here.
SETTINGS = {
    "none": pb.Regularizer(none=pb.NoRegularizer(weight_decay=1e-4)),
    "l2fe": pb.Regularizer(l2fe=pb.L2Fe()),
    "l2sp": pb.Regularizer(l2sp=pb.L2Sp(alpha=0.01)),
    "feature_map": pb.Regularizer(feature_map=pb.FeatureMap(alpha=0.001)),
    "delta": pb.Regularizer(delta=pb.Delta(alpha=0.1, head_iterations=30)),
    "afa_spatial": pb.Regularizer(afa_spatial=pb.AfaSpatial(alpha=0.001)),
    "afa_channel": pb.Regularizer(afa_channel=pb.AfaChannel(alpha=0.01)),
}


def test_every_kind_has_settings():
    assert list(SETTINGS) == list(REGULARIZERS)


def _stage(name: str, regularizer: pb.Regularizer, iterations: int, lr: float) -> pb.StageSpec:
    return pb.StageSpec(name=name, regularizer=regularizer, iterations=iterations, batch_size=64, head_l2=0.01,
                        optimizer=pb.OptimizerSpec(lr=lr, momentum=0.9), log_every=25, eval_every=50, seed=0,
                        restore_best=True, lr_schedule=pb.LrSchedule(step=pb.StepLr(at_fractions=[2 / 3], gamma=0.1)))


def _run(stub, session_id: str, stage: pb.StageSpec) -> tuple[list[pb.StageEvent], pb.StageSummary]:
    events = list(stub.RunStage(pb.RunStageRequest(session_id=session_id, stage=stage)))
    return events, events[-1].summary


@pytest.fixture(scope="module")
def grpc_stub():
    from afa_worker._gen.afa.v1 import afa_pb2_grpc as pbgrpc
    from afa_worker.auth import authorized_channel
    from afa_worker.server import ServerOptions, WorkerServer

    srv = WorkerServer(ServerOptions(port=0, grace_seconds=1.0, allow_write_anywhere=True))
    srv.start()
    with authorized_channel(f"127.0.0.1:{srv.port}", srv.options.token) as channel:
        yield pbgrpc.AfaWorkerStub(channel)
    srv.shutdown()


@pytest.fixture(scope="module")
def source_checkpoint(grpc_stub, tmp_path_factory) -> str:
    created = grpc_stub.CreateSession(pb.CreateSessionRequest(
        backbone=pb.BackboneSpec(name="small_resnet", width=WIDTH),
        data=pb.DataSpec(fashion_mnist=pb.FashionMnistData(), val_per_class=50, test_per_class=100), seed=0))
    stage = _stage("pretrain", SETTINGS["none"], 300, 0.05)
    stage.lr_schedule.CopyFrom(pb.LrSchedule(cosine=pb.CosineLr()))
    _events, summary = _run(grpc_stub, created.session_id, stage)
    test = grpc_stub.Evaluate(pb.EvaluateRequest(session_id=created.session_id, split=pb.SPLIT_TEST))
    print(f"\npretrain fashion-mnist: val {summary.best_val_accuracy:.3f} test {test.accuracy:.3f} "
          f"({summary.wall_seconds:.1f}s)")
    assert test.accuracy > 0.6
    saved = grpc_stub.SaveCheckpoint(pb.SaveCheckpointRequest(
        session_id=created.session_id, path=str(tmp_path_factory.mktemp("src") / "fashion.safetensors")))
    grpc_stub.CloseSession(pb.CloseSessionRequest(session_id=created.session_id))
    return saved.path


def _target_session(stub, weights: str) -> str:
    return stub.CreateSession(pb.CreateSessionRequest(
        backbone=pb.BackboneSpec(name="small_resnet", width=WIDTH), source_weights=weights,
        data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=10, val_per_class=10, seed=0), seed=0)).session_id


@pytest.mark.parametrize("name", list(REGULARIZERS))
def test_transfer_with_each_regularizer_beats_chance(grpc_stub, source_checkpoint, name):
    session_id = _target_session(grpc_stub, source_checkpoint)
    # A head alone on frozen features wants a larger step than fine-tuning the whole network.
    lr, iterations = (0.1, 300) if name == "l2fe" else (0.01, 150)
    events, summary = _run(grpc_stub, session_id, _stage(name, SETTINGS[name], iterations, lr))
    kinds = [e.WhichOneof("event") for e in events]
    assert set(kinds[:kinds.index("started")]) <= {"progress"}, "only the phases before the first step come before it"
    assert kinds[-1] == "summary"
    assert kinds.count("step") == iterations // 25 and kinds.count("eval") == iterations // 50
    assert summary.status == pb.STAGE_STATUS_COMPLETED and summary.steps_completed == iterations
    test = grpc_stub.Evaluate(pb.EvaluateRequest(session_id=session_id, split=pb.SPLIT_TEST))
    print(f"\n{name:12s} val {summary.best_val_accuracy:.3f} test {test.accuracy:.3f} ({summary.wall_seconds:.1f}s)")
    assert test.accuracy > MARGIN * CHANCE
    if name.startswith("afa_"):
        assert [a.layer for a in summary.attention] == ["layer1.0", "layer2.0", "layer3.0"]
        assert all(0 <= a.entropy <= a.max_entropy + 1e-6 for a in summary.attention)
    grpc_stub.CloseSession(pb.CloseSessionRequest(session_id=session_id))


def test_afa_two_stage_schedule(grpc_stub, source_checkpoint):
    session_id = _target_session(grpc_stub, source_checkpoint)
    ast = pb.Regularizer(afa_spatial=pb.AfaSpatial(alpha=3e-4))
    act = pb.Regularizer(afa_channel=pb.AfaChannel(alpha=3e-3))
    _e, first = _run(grpc_stub, session_id, _stage("ast", ast, 150, 0.01))
    grpc_stub.PromoteTargetToSource(pb.PromoteTargetToSourceRequest(session_id=session_id))
    _e, second = _run(grpc_stub, session_id, _stage("act", act, 75, 0.001))
    test = grpc_stub.Evaluate(pb.EvaluateRequest(session_id=session_id, split=pb.SPLIT_TEST))
    print(f"\nafa two-stage val {first.best_val_accuracy:.3f} -> {second.best_val_accuracy:.3f} test {test.accuracy:.3f}")
    assert second.status == pb.STAGE_STATUS_COMPLETED
    assert test.accuracy > MARGIN * CHANCE
