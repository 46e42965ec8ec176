"""Stages on real data: the same stage over gRPC and in-process gives the same numbers; cancel,
busy, promote and checkpoints; and a short real transfer with every regulariser."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import grpc
import pytest
import torch

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.errors import SpecError
from afa_worker.precision import PrecisionPlan
from afa_worker.session import create_session
from afa_worker.stage_plan import parse_lr_schedule, parse_stage
from afa_worker.trainer import evaluate, run_stage

WIDTH = 8


def _sgd(lr: float) -> pb.OptimizerSpec:
    return pb.OptimizerSpec(kind=pb.OPTIMIZER_KIND_SGD, lr=lr, momentum=0.9)


def _pretrain_request() -> pb.CreateSessionRequest:
    return pb.CreateSessionRequest(
        backbone=pb.BackboneSpec(name="small_resnet", width=WIDTH),
        data=pb.DataSpec(fashion_mnist=pb.FashionMnistData(), val_per_class=20, test_per_class=50, seed=0), seed=0)


@pytest.fixture(scope="module")
def source_weights(tmp_path_factory) -> str:
    """A small Fashion-MNIST source, pretrained as a session with no source and a plain stage."""
    session = create_session(_pretrain_request())
    assert session.source is None
    stage = pb.StageSpec(name="pretrain", regularizer=pb.Regularizer(none=pb.NoRegularizer(weight_decay=1e-4)),
                         optimizer=_sgd(0.05), lr_schedule=pb.LrSchedule(cosine=pb.CosineLr()),
                         iterations=200, batch_size=64, seed=0)
    summary = list(run_stage(session, parse_stage(stage), threading.Event()))[-1].summary
    assert summary.status == pb.STAGE_STATUS_COMPLETED and summary.final_val_accuracy > 0.5
    from afa_worker.checkpoint import save_checkpoint

    path, _meta, _size, _digest = save_checkpoint(session.target, str(tmp_path_factory.mktemp("src") / "fmnist"), {})
    return path


def _transfer_request(weights: str, seed: int = 0) -> pb.CreateSessionRequest:
    return pb.CreateSessionRequest(
        backbone=pb.BackboneSpec(name="small_resnet", width=WIDTH), source_weights=weights,
        data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=10, val_per_class=10, seed=seed,
                         test_per_class=100), seed=seed)


def _stage(regularizer: pb.Regularizer, iterations: int = 20, **kw) -> pb.StageSpec:
    base = dict(name="s", regularizer=regularizer, optimizer=_sgd(0.01), iterations=iterations, batch_size=32,
                head_l2=0.01, eval_every=10, log_every=5, seed=1,
                lr_schedule=pb.LrSchedule(step=pb.StepLr(at_fractions=[2 / 3], gamma=0.1)))
    base.update(kw)
    return pb.StageSpec(**base)


def _comparable(events: list[pb.StageEvent]) -> list:
    """Every number of the stream except the wall-clock ones (progress events come at most every
    quarter second, so how many there are depends on the clock too)."""
    out = []
    for e in events:
        which = e.WhichOneof("event")
        if which == "progress":
            continue
        msg = getattr(e, which)
        copy = type(msg)()
        copy.CopyFrom(msg)
        for timing in ("images_per_second", "wall_seconds", "delivery_wait_seconds"):
            if hasattr(copy, timing):
                setattr(copy, timing, 0)
        if hasattr(copy, "stability"):
            copy.stability.seconds = copy.stability.budget_seconds = 0
        if which == "summary":
            for timing in copy.phases:
                timing.seconds, timing.detail = 0, ""
        out.append((which, copy.SerializeToString(deterministic=True)))
    return out


def test_grpc_stage_equals_in_process_stage(source_weights, stub):
    stage = _stage(pb.Regularizer(afa_channel=pb.AfaChannel(alpha=0.01)))
    local = create_session(_transfer_request(source_weights))
    local_events = list(run_stage(local, parse_stage(stage), threading.Event()))

    created = stub.CreateSession(_transfer_request(source_weights))
    assert created.has_source and [layer.name for layer in created.layers] == ["layer1.0", "layer2.0", "layer3.0"]
    assert list(created.layers[0].shape) == [WIDTH, 28, 28]
    remote_events = list(stub.RunStage(pb.RunStageRequest(session_id=created.session_id, stage=stage)))

    assert [w for w, _ in _comparable(remote_events)] == ["started", "step", "step", "eval", "step", "step", "eval", "summary"]
    assert _comparable(remote_events) == _comparable(local_events)
    test = stub.Evaluate(pb.EvaluateRequest(session_id=created.session_id, split=pb.SPLIT_TEST))
    assert test.count == 1000 and test.accuracy == pytest.approx(evaluate(local, local.data.test)[1])


def test_cancel_stops_within_a_step_and_session_serves_again(source_weights, stub):
    created = stub.CreateSession(_transfer_request(source_weights))
    call = stub.RunStage(pb.RunStageRequest(session_id=created.session_id,
                                            stage=_stage(pb.Regularizer(none=pb.NoRegularizer()), iterations=100000, log_every=1)))
    first = next(call)
    assert first.WhichOneof("event") == "started"
    next(call)  # one step done
    # While it runs, a second stage on the same session is refused, and the worker still answers.
    with pytest.raises(grpc.RpcError) as busy:
        list(stub.RunStage(pb.RunStageRequest(session_id=created.session_id, stage=_stage(pb.Regularizer(l2fe=pb.L2Fe())))))
    assert busy.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "busy" in busy.value.details()
    call.cancel()
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            stub.Evaluate(pb.EvaluateRequest(session_id=created.session_id, split=pb.SPLIT_VAL))
            break
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
            time.sleep(0.02)
    else:
        pytest.fail("the session stayed busy after the stream was cancelled")
    summary = list(stub.RunStage(pb.RunStageRequest(session_id=created.session_id, stage=_stage(
        pb.Regularizer(none=pb.NoRegularizer()), iterations=3))))[-1].summary
    assert summary.status == pb.STAGE_STATUS_COMPLETED and summary.steps_completed == 3


def test_cancel_event_in_process_reports_cancelled():
    session = create_session(_pretrain_request())
    cancel = threading.Event()
    events = []
    for event in run_stage(session, parse_stage(_stage(pb.Regularizer(none=pb.NoRegularizer()), iterations=1000, log_every=1)), cancel):
        events.append(event)
        if event.WhichOneof("event") == "step" and event.step.step == 3:
            cancel.set()
    summary = events[-1].summary
    assert summary.status == pb.STAGE_STATUS_CANCELLED and summary.steps_completed == 3


def _all_finite(model) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.is_floating_point())


def test_divergence_ends_the_stage_and_leaves_no_nan_weights_in_the_session():
    session = create_session(_pretrain_request())
    before = {k: v.clone() for k, v in session.target.state_dict().items()}
    stage = _stage(pb.Regularizer(none=pb.NoRegularizer()), iterations=200, optimizer=_sgd(1e6), log_every=0, eval_every=0)
    summary = list(run_stage(session, parse_stage(stage), threading.Event()))[-1].summary
    assert summary.status == pb.STAGE_STATUS_DIVERGED
    assert "lower the lr" in summary.message and summary.steps_completed < 200
    # No evaluation in the stage: the weights are those of its start, exactly, and the session goes on.
    assert "back to its weights from the stage's start" in summary.message
    assert all(torch.equal(v, before[k]) for k, v in session.target.state_dict().items())
    loss, _ = evaluate(session, session.data.val)
    assert math.isfinite(loss)
    after = list(run_stage(session, parse_stage(_stage(pb.Regularizer(none=pb.NoRegularizer()), iterations=5)), threading.Event()))
    assert after[-1].summary.status == pb.STAGE_STATUS_COMPLETED


def test_a_divergence_after_a_validated_step_goes_back_to_that_step():
    session = create_session(_pretrain_request())
    # an lr that trains for half the stage, then blows it up: 0.05, then x1e7
    stage = _stage(pb.Regularizer(none=pb.NoRegularizer()), iterations=60, optimizer=_sgd(0.05), eval_every=10, log_every=0, restore_best=True,
                   lr_schedule=pb.LrSchedule(step=pb.StepLr(at_fractions=[0.5], gamma=1e7)))
    summary = list(run_stage(session, parse_stage(stage), threading.Event()))[-1].summary
    assert summary.status == pb.STAGE_STATUS_DIVERGED and summary.best_step in (10, 20, 30)
    assert f"back to its weights of step {summary.best_step} (its best validation)" in summary.message
    assert _all_finite(session.target)
    _, accuracy = evaluate(session, session.data.val)
    assert accuracy == pytest.approx(summary.best_val_accuracy)  # the best step's model, as the stage measured it


def test_a_session_whose_weights_are_not_finite_is_refused_until_closed(server, stub):
    session_id = stub.CreateSession(_pretrain_request()).session_id
    # Weights that were not finite before the stage (no finite copy to go back to): poisoned here by hand.
    with torch.no_grad():
        server.servicer._sessions[session_id].target.conv1.weight.fill_(float("nan"))
    stage = _stage(pb.Regularizer(none=pb.NoRegularizer()), iterations=20, log_every=0, eval_every=0)
    events = list(stub.RunStage(pb.RunStageRequest(session_id=session_id, stage=stage)))
    assert events[-1].summary.status == pb.STAGE_STATUS_DIVERGED and "the session is unusable" in events[-1].summary.message
    for call in (lambda: stub.Evaluate(pb.EvaluateRequest(session_id=session_id, split=pb.SPLIT_VAL)),
                 lambda: list(stub.RunStage(pb.RunStageRequest(session_id=session_id, stage=stage))),
                 lambda: stub.Predict(pb.PredictRequest(session_id=session_id))):
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"session {session_id[:8]} is unusable: its weights are not finite" in refused.value.details()
    stub.CloseSession(pb.CloseSessionRequest(session_id=session_id))  # still closes
    assert stub.GetInfo(pb.GetInfoRequest()).active_sessions == 0


def test_attention_lr_multiplier_scales_only_the_attention_parameters(source_weights):
    from afa_worker.stage_setup import prepare_stage

    session = create_session(_transfer_request(source_weights))
    stage = _stage(pb.Regularizer(afa_channel=pb.AfaChannel(alpha=1e-2)), attention_lr_multiplier=0.1)
    with prepare_stage(session, parse_stage(stage)) as run:
        reg, optimizer = run.reg, run.optimizer
    attention_ids = {id(p) for p in reg.parameters()}
    lrs = {("attention" if id(g["params"][0]) in attention_ids else "model"): g["lr"] for g in optimizer.opt.param_groups}
    assert lrs == pytest.approx({"model": 0.01, "attention": 0.001})
    optimizer.set_factor(0.1)  # the lr schedule keeps the ratio
    assert sorted(g["lr"] for g in optimizer.opt.param_groups)[0] == pytest.approx(1e-4)


def test_l2fe_trains_only_the_head(source_weights):
    session = create_session(_transfer_request(source_weights))
    before = {k: v.clone() for k, v in session.target.state_dict().items()}
    list(run_stage(session, parse_stage(_stage(pb.Regularizer(l2fe=pb.L2Fe()))), threading.Event()))
    after = session.target.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}
    assert all(p.requires_grad for p in session.target.parameters())  # unfrozen for the next stage


def test_promote_copies_target_backbone_into_source(source_weights, stub):
    session = create_session(_transfer_request(source_weights))
    list(run_stage(session, parse_stage(_stage(pb.Regularizer(afa_spatial=pb.AfaSpatial(alpha=0.001)))), threading.Event()))
    assert not torch.equal(session.source.conv1.weight, session.target.conv1.weight)
    copied = session.promote_target_to_source()
    assert copied > 0
    assert torch.equal(session.source.conv1.weight, session.target.conv1.weight)
    assert torch.equal(session.source.layer3[0].bn2.running_mean, session.target.layer3[0].bn2.running_mean)
    assert not session.source.conv1.weight.requires_grad
    # and over gRPC
    created = stub.CreateSession(_transfer_request(source_weights))
    assert stub.PromoteTargetToSource(pb.PromoteTargetToSourceRequest(session_id=created.session_id)).tensors_copied > 0


def test_checkpoint_is_written_atomically_with_spec_sidecar(source_weights, stub, tmp_path: Path):
    request = _transfer_request(source_weights)
    request.spec_json = json.dumps({"name": "ckpt-test"})
    created = stub.CreateSession(request)
    saved = stub.SaveCheckpoint(pb.SaveCheckpointRequest(session_id=created.session_id, path=str(tmp_path / "m.safetensors")))
    assert Path(saved.path).is_file() and saved.bytes > 0 and len(saved.sha256) == 64
    meta = json.loads(Path(saved.metadata_path).read_text())
    assert meta["spec"] == {"name": "ckpt-test"} and meta["num_classes"] == 10 and meta["sha256"] == saved.sha256
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # The checkpoint is a valid source for a new transfer session.
    again = stub.CreateSession(_transfer_request(saved.path))
    assert again.has_source


def test_a_checkpoint_path_the_file_system_cannot_take_is_invalid_argument_naming_path(stub, tmp_path: Path):
    created = stub.CreateSession(pb.CreateSessionRequest(backbone=pb.BackboneSpec(name="small_resnet", width=4), seed=0,
                                                         data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=2)))
    for path, problem in ((str(tmp_path / "a\0b.safetensors"), "must not contain a NUL character"),
                          (str(tmp_path / ("x" * 5000)), "has a component of 5000 bytes"),
                          ("/" + "/".join(["d" * 200] * 30), "holds 6030 bytes; at most 4096")):
        with pytest.raises(grpc.RpcError) as refused:
            stub.SaveCheckpoint(pb.SaveCheckpointRequest(session_id=created.session_id, path=path))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
        assert refused.value.details().startswith("path: ") and problem in refused.value.details()
    assert stub.GetInfo(pb.GetInfoRequest()).active_sessions == 1  # still serving
    assert list(tmp_path.iterdir()) == []


def test_lr_schedules():
    step = pb.LrSchedule(step=pb.StepLr(at_fractions=[2 / 3], gamma=0.1))
    assert parse_lr_schedule(step).factor(0, 90) == 1.0 and parse_lr_schedule(step).factor(59, 90) == 1.0
    assert parse_lr_schedule(step).factor(60, 90) == pytest.approx(0.1)
    cosine = pb.LrSchedule(cosine=pb.CosineLr(min_fraction=0.0))
    assert parse_lr_schedule(cosine).factor(0, 100) == 1.0 and parse_lr_schedule(cosine).factor(50, 100) == pytest.approx(0.5)
    assert parse_lr_schedule(pb.LrSchedule()).factor(10, 100) == 1.0


@pytest.mark.parametrize("bad,field", [
    (dict(iterations=0), "stage.iterations"),
    (dict(batch_size=0), "stage.batch_size"),
    (dict(optimizer=pb.OptimizerSpec(lr=float("nan"))), "stage.optimizer.lr"),
    (dict(regularizer=pb.Regularizer(afa_channel=pb.AfaChannel(alpha=-1))), "stage.regularizer.afa_channel.alpha"),
    (dict(regularizer=pb.Regularizer()), "stage.regularizer"),
    (dict(attention_lr_multiplier=-0.5), "stage.attention_lr_multiplier"),
])
def test_bad_stage_is_invalid_argument_and_worker_keeps_serving(source_weights, stub, bad, field):
    created = stub.CreateSession(_transfer_request(source_weights))
    overrides = dict(bad)
    regularizer = overrides.pop("regularizer", pb.Regularizer(none=pb.NoRegularizer()))
    with pytest.raises(grpc.RpcError) as err:
        list(stub.RunStage(pb.RunStageRequest(session_id=created.session_id, stage=_stage(regularizer, **overrides))))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field + ":")
    assert stub.GetInfo(pb.GetInfoRequest()).active_sessions >= 1


def test_alignment_without_a_source_is_refused(stub):
    created = stub.CreateSession(_pretrain_request())
    assert not created.has_source
    with pytest.raises(grpc.RpcError) as err:
        list(stub.RunStage(pb.RunStageRequest(session_id=created.session_id,
                                              stage=_stage(pb.Regularizer(delta=pb.Delta(alpha=0.1))))))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "source" in err.value.details()


def test_wrong_layer_over_grpc_lists_valid_layers(source_weights, stub):
    request = _transfer_request(source_weights)
    request.layers.append("layer2.7")
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateSession(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("layers: 'layer2.7' is not a module") and "layer2.0.conv1" in err.value.details()


def _summary(session, stage) -> pb.StageSummary:
    return list(run_stage(session, parse_stage(stage), threading.Event()))[-1].summary


@pytest.mark.parametrize("source_dtype", [torch.float32, torch.bfloat16])
def test_source_feature_cache_gives_the_same_stage(source_weights, source_dtype):
    def session():
        s = create_session(_transfer_request(source_weights))
        # set directly, so the bf16 source path is tested on any CPU (autocast emulates it)
        s.precision = PrecisionPlan(s.device, torch.float32, source_dtype)
        return s

    stage = _stage(pb.Regularizer(afa_channel=pb.AfaChannel(alpha=0.01)), iterations=12)
    cached = _summary(session(), stage)
    stage.no_feature_cache = True
    plain = _summary(session(), stage)
    # 100 training images x (8x28x28 + 16x14x14 + 32x7x7) maps, 4 or 2 bytes each
    assert cached.feature_cache_bytes == 100 * (8 * 784 + 16 * 196 + 32 * 49) * (4 if source_dtype == torch.float32 else 2)
    assert plain.feature_cache_bytes == 0
    assert cached.final_train_loss == pytest.approx(plain.final_train_loss, rel=1e-4)
    assert cached.final_val_loss == pytest.approx(plain.final_val_loss, rel=1e-4)


def test_bf16_source_changes_the_alignment_little(source_weights):
    """The bf16 source forward (PRECISION_AUTO on CPUs with bf16 units) against fp32: same stage,
    a reg loss within a few per cent."""
    summaries = []
    for precision in (pb.PRECISION_FP32, pb.PRECISION_AUTO):
        s = create_session(_transfer_request(source_weights))
        s.precision = PrecisionPlan(s.device, torch.float32,
                                    torch.float32 if precision == pb.PRECISION_FP32 else torch.bfloat16)
        stage = _stage(pb.Regularizer(feature_map=pb.FeatureMap(alpha=0.001)), iterations=5, log_every=5, no_feature_cache=True)
        events = list(run_stage(s, parse_stage(stage), threading.Event()))
        summaries.append(next(e.step for e in events if e.WhichOneof("event") == "step"))
    fp32, bf16 = summaries
    assert fp32.reg_loss > 0 and bf16.reg_loss == pytest.approx(fp32.reg_loss, rel=0.05)
    assert bf16.ce_loss == pytest.approx(fp32.ce_loss, rel=0.02)


def test_session_models_and_inputs_share_the_session_s_layout(source_weights):
    s = create_session(_transfer_request(source_weights))
    fmt = s.layout.memory_format  # contiguous for this narrow network (see test_layout.py)
    for model in (s.target, s.source):
        assert model.layer1[0].conv1.weight.is_contiguous(memory_format=fmt)
    x = s.data.normalise(s.data.train.x[:4])
    assert x.is_contiguous(memory_format=fmt)


def test_no_feature_cache_over_budget_or_with_augmentation(source_weights):
    stage = _stage(pb.Regularizer(feature_map=pb.FeatureMap(alpha=0.001)), iterations=2, feature_cache_mb=1)
    assert _summary(create_session(_transfer_request(source_weights)), stage).feature_cache_bytes == 0
    request = _transfer_request(source_weights)
    request.data.augment = True
    stage.feature_cache_mb = 0
    assert _summary(create_session(request), stage).feature_cache_bytes == 0


def test_source_bn_is_recalibrated_on_target_data(source_weights):
    from afa_worker.features import FeatureTap
    from afa_worker.regularizers.feature_map import FeatureMapAlignment
    from afa_worker.session import recalibrate_bn

    session = create_session(_transfer_request(source_weights))
    x = session.data.normalise(session.data.train.x[:64])

    def omega_at_start() -> float:
        session.target.train()
        with FeatureTap(session.target, session.layers) as tt, FeatureTap(session.source, session.layers) as ts, torch.no_grad():
            session.source(x)
            fs = ts.take()
            session.target(x)
            ft = tt.take()
        return FeatureMapAlignment().omega(ft, fs).item()

    with_source_stats = omega_at_start()
    assert recalibrate_bn(session.source, iter([session.data.normalise(session.data.train.x)])) == 100
    assert not session.source.training
    assert omega_at_start() < with_source_stats / 20



def _attention_run(source_weights, regularizer: pb.Regularizer, images: int):
    from afa_worker.stage_setup import prepare_stage

    session = create_session(_transfer_request(source_weights))
    return session, prepare_stage(session, parse_stage(_stage(regularizer, attention_images=images)))


def test_spatial_snapshot_shows_where_the_attention_module_looks(source_weights):
    """Each layer's spatial attention set to put (almost) all weight on one position: the snapshot's
    upsampled map peaks (255) inside that position's cell of the input and is 0 far from it."""
    from afa_worker.snapshot import attention_snapshot

    session, run = _attention_run(source_weights, pb.Regularizer(afa_spatial=pb.AfaSpatial(alpha=1e-3)), images=3)
    with run, torch.no_grad():
        for module in run.reg.attention.values():
            last = module.mlp[2]
            last.weight.zero_()
            last.bias.zero_()
            last.bias[5] = 30.0  # row 0, column 5 of the layer's grid
        snapshot = attention_snapshot(run)
    val = session.data.val
    assert (snapshot.split, snapshot.height, snapshot.width, snapshot.channels) == ("val", 28, 28, 1)
    # the first image of each of the first three classes met in the split
    seen, firsts = set(), []
    for i, label in enumerate(val.y.tolist()):
        if label not in seen:
            seen.add(label)
            firsts.append(i)
    assert [im.label for im in snapshot.images] == [val.y[i].item() for i in firsts[:3]]
    assert len({im.label for im in snapshot.images}) == 3
    assert snapshot.images[1].pixels == val.x[firsts[1], 0].contiguous().numpy().tobytes()
    assert [layer.layer for layer in snapshot.layers] == session.layers
    for layer in snapshot.layers:
        h, w = layer.map_height, layer.map_width
        assert layer.kind == "spatial" and len(layer.spatial) == 3
        cell = 28 // h
        for raw in layer.spatial:
            heat = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(28, 28)
            assert heat[0:cell, 5 * cell:6 * cell].max() == 255
            assert heat[27, 0] == 0 and heat[27, 27] == 0
        assert layer.max_entropy == pytest.approx(math.log(h * w))
        assert layer.entropy < 0.01
        assert list(layer.peak_over_uniform) == pytest.approx([h * w] * 3, rel=1e-3)


def test_channel_snapshot_is_the_channel_distribution_with_its_entropy(source_weights):
    """Channel attention reduced to its per-channel bias log(1..C): weights j/sum(1..C), whatever the maps."""
    from afa_worker.snapshot import attention_snapshot

    _session, run = _attention_run(source_weights, pb.Regularizer(afa_channel=pb.AfaChannel(alpha=1e-3)), images=2)
    with run, torch.no_grad():
        for module in run.reg.attention.values():
            module.mlp[2].weight.zero_()
            channels = module.channel_bias.numel()
            module.channel_bias.copy_(torch.arange(1, channels + 1, dtype=torch.float32).log())
        snapshot = attention_snapshot(run)
    for layer in snapshot.layers:
        channels = len(layer.channel)
        expected = [j / (channels * (channels + 1) / 2) for j in range(1, channels + 1)]
        assert layer.kind == "channel" and not layer.spatial
        assert list(layer.channel) == pytest.approx(expected, rel=1e-5)
        assert layer.entropy == pytest.approx(-sum(p * math.log(p) for p in expected), rel=1e-5)
        assert layer.max_entropy == pytest.approx(math.log(channels))
        assert list(layer.peak_over_uniform) == pytest.approx([channels * expected[-1]] * 2, rel=1e-5)


def test_channel_snapshot_reports_each_channels_discrepancy_in_eval_mode(source_weights):
    """Per channel, mean over the snapshot's images of ||F_t,j - F_s,j||^2 / HW, from the target in
    eval mode; the snapshot leaves the target's batch-norm statistics and training mode alone."""
    from afa_worker.features import FeatureTap
    from afa_worker.snapshot import attention_snapshot

    session, run = _attention_run(source_weights, pb.Regularizer(afa_channel=pb.AfaChannel(alpha=1e-3)), images=3)
    with run:
        with torch.no_grad():  # a target that differs from the source, so discrepancies are not all 0
            for p in session.target.parameters():
                p.add_(0.05 * torch.randn_like(p))
        bn_before = {k: v.clone() for k, v in session.target.state_dict().items() if "running" in k}
        snapshot = attention_snapshot(run)
        assert session.target.training
        assert all(torch.equal(session.target.state_dict()[k], v) for k, v in bn_before.items())
        seen, firsts = set(), []
        for i, label in enumerate(session.data.val.y.tolist()):
            if label not in seen:
                seen.add(label)
                firsts.append(i)
        x = session.data.normalise(session.data.val.x[firsts[:3]])
        session.target.eval()
        with FeatureTap(session.target, session.layers) as tt, FeatureTap(session.source, session.layers) as ts, \
                torch.no_grad():
            session.target(x)
            with session.precision.source_autocast():  # as in training: the frozen source may run in bf16
                session.source(x)
            ft, fs = tt.take(), ts.take()
        session.target.train()
    for layer in snapshot.layers:
        t, s_ = ft[layer.layer], fs[layer.layer]
        channels, hw = t.shape[1], t.shape[2] * t.shape[3]
        want = [sum(float(((t[b, j] - s_[b, j]) ** 2).sum()) / hw for b in range(3)) / 3 for j in range(channels)]
        assert list(layer.channel_discrepancy) == pytest.approx(want, rel=1e-4)
        assert max(want) > 0


def test_a_uniform_floor_outside_zero_to_one_is_refused_naming_the_field():
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(SpecError, match=r"stage\.regularizer\.afa_channel\.uniform_floor: must be a number in \[0, 1\]"):
            parse_stage(_stage(pb.Regularizer(afa_channel=pb.AfaChannel(alpha=1e-3, uniform_floor=bad))))
    plan = parse_stage(_stage(pb.Regularizer(afa_channel=pb.AfaChannel(alpha=1e-3, uniform_floor=0.5))))
    assert plan.regularizer.options["uniform_floor"] == 0.5


def test_attention_in_step_events_and_the_snapshot_only_when_asked(source_weights):
    def events(regularizer, images):
        session = create_session(_transfer_request(source_weights))
        stage = _stage(regularizer, iterations=4, log_every=2, eval_every=0, attention_images=images)
        return list(run_stage(session, parse_stage(stage), threading.Event()))

    ast = pb.Regularizer(afa_spatial=pb.AfaSpatial(alpha=1e-3))
    stream = events(ast, 2)
    steps = [e.step for e in stream if e.WhichOneof("event") == "step"]
    assert [s.step for s in steps] == [2, 4]
    assert all([a.layer for a in s.attention] == ["layer1.0", "layer2.0", "layer3.0"] for s in steps)
    assert all(0 < a.entropy <= a.max_entropy for s in steps for a in s.attention)
    summary = stream[-1].summary
    assert len(summary.attention_snapshot.images) == 2
    assert not events(ast, 0)[-1].summary.HasField("attention_snapshot")
    plain = events(pb.Regularizer(feature_map=pb.FeatureMap(alpha=1e-3)), 2)
    assert not plain[-1].summary.HasField("attention_snapshot")
    assert all(not e.step.attention for e in plain if e.WhichOneof("event") == "step")


def test_power_iteration_finds_the_top_hessian_eigenvalue_of_a_feature_distance():
    """Omega of a conv layer's maps against fixed source maps, through the twice-differentiable
    distance: the estimate equals the largest eigenvalue of the full Hessian (torch.func, eigvalsh)."""
    from afa_worker.regularizers.distance import twice_differentiable, weighted_sq_distance
    from afa_worker import stability
    from afa_worker.phases import PhaseTracker
    from afa_worker.stability import _power_iteration

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 3, 3, bias=True).double()
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    fs = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    weights = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)

    def omega_of(flat: torch.Tensor) -> torch.Tensor:
        w, b = flat[:54].view(3, 2, 3, 3), flat[54:]
        ft = torch.nn.functional.conv2d(torch.tanh(x), w, b)
        return 0.5 * weighted_sq_distance(torch.tanh(ft), fs, weights, over="channel")

    flat = torch.cat([conv.weight.detach().flatten(), conv.bias.detach()])
    with twice_differentiable():
        exact = torch.linalg.eigvalsh(torch.autograd.functional.hessian(omega_of, flat)).max().item()
        param = torch.nn.Parameter(flat.clone())
        budget = stability._Budget(iterations=1, batch_size=1)
        estimate, products, converged = _power_iteration(lambda: omega_of(param), [param], torch.Generator().manual_seed(1),
                                                         budget, PhaseTracker("stability_estimate", 20, "products", None))
    assert estimate == pytest.approx(exact, rel=0.02) and products <= 20 and converged


def test_stability_estimate_sets_a_relative_alpha_and_reports_where_an_absolute_one_sits(source_weights):
    def first_and_last(regularizer, **kw):
        session = create_session(_transfer_request(source_weights))
        events = [e for e in run_stage(session, parse_stage(_stage(regularizer, iterations=2, **kw)), threading.Event())
                  if e.WhichOneof("event") != "progress"]
        assert events[0].started.HasField("stability") == events[-1].summary.HasField("stability")
        return events[0].started.stability, events[-1].summary.stability

    started, summary = first_and_last(pb.Regularizer(feature_map=pb.FeatureMap()), alpha_relative=0.3)
    assert started.lambda_max > 0 and started.products > 0 and started.seconds > 0
    # SGD momentum 0.9 at lr 0.01 (the _stage default): alpha_max = 2 (1 + 0.9) / (0.01 lambda)
    assert started.alpha_max == pytest.approx(3.8 / (0.01 * started.lambda_max))
    assert started.alpha == pytest.approx(0.3 * started.alpha_max) and started.alpha_ratio == pytest.approx(0.3)
    assert summary == started
    started, _ = first_and_last(pb.Regularizer(afa_channel=pb.AfaChannel(alpha=1e-3)))
    assert started.alpha == pytest.approx(1e-3) and started.alpha_ratio == pytest.approx(1e-3 / started.alpha_max)
    started, _ = first_and_last(pb.Regularizer(l2sp=pb.L2Sp(alpha=0.1)))  # exact: Omega's Hessian is the identity
    assert (started.lambda_max, started.products) == (1.0, 0) and started.alpha_max == pytest.approx(380.0)
    started, summary = first_and_last(pb.Regularizer(none=pb.NoRegularizer()))
    assert started.lambda_max == 0 and summary.lambda_max == 0  # no field set
    started, _ = first_and_last(pb.Regularizer(feature_map=pb.FeatureMap(alpha=1e-3)), no_stability_estimate=True)
    assert started.lambda_max == 0


def test_the_estimate_leaves_weights_and_batch_norm_statistics_as_they_were(source_weights):
    from afa_worker.stability import estimate_stability
    from afa_worker.stage_setup import prepare_stage

    session = create_session(_transfer_request(source_weights))
    before = {k: v.clone() for k, v in session.target.state_dict().items()}
    with prepare_stage(session, parse_stage(_stage(pb.Regularizer(afa_spatial=pb.AfaSpatial(alpha=1e-3))))) as run:
        assert estimate_stability(run).lambda_max > 0
        assert all(p.grad is None for p in session.target.parameters())
    after = session.target.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("change, field", [
    (dict(regularizer=pb.Regularizer(none=pb.NoRegularizer())), "stage.alpha_relative"),
    (dict(regularizer=pb.Regularizer(l2fe=pb.L2Fe())), "stage.alpha_relative"),
    (dict(regularizer=pb.Regularizer(feature_map=pb.FeatureMap(alpha=1e-3))), "stage.alpha_relative"),
    (dict(optimizer=pb.OptimizerSpec(kind=pb.OPTIMIZER_KIND_ADAM, lr=1e-3)), "stage.alpha_relative"),
    (dict(no_stability_estimate=True), "stage.no_stability_estimate"),
    (dict(alpha_relative=float("nan")), "stage.alpha_relative"),
])
def test_a_relative_alpha_is_refused_where_it_has_no_meaning(change, field):
    from afa_worker.errors import SpecError

    stage = _stage(pb.Regularizer(feature_map=pb.FeatureMap()), alpha_relative=0.5)
    for key, value in change.items():
        if isinstance(value, float) or isinstance(value, bool):
            setattr(stage, key, value)
        else:
            getattr(stage, key).CopyFrom(value)
    with pytest.raises(SpecError) as err:
        parse_stage(stage)
    assert err.value.field == field
