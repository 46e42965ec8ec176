"""The phases before a stage's first step: each reported as it runs (start, progress, end) and timed
in the summary; the stability estimate bounded by its time budget; the feature cache's budget
deciding with a message; progress reaching a stream's reader before the stage's next event."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from afa_worker import stability
from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.backbones import build_backbone
from afa_worker.checkpoint import save_checkpoint
from afa_worker.compute import ComputeThread
from afa_worker.session import create_session
from afa_worker.stage_plan import parse_stage
from afa_worker.trainer import run_stage

PRE_STEP = ["bn_recalibration", "delta_probe", "feature_cache", "stability_estimate"]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A transfer session from a randomly initialised source (the phases do not care what it learnt)."""
    path, *_ = save_checkpoint(build_backbone("small_resnet", 10, 1, width=8), str(tmp_path_factory.mktemp("src") / "src"), {})
    return create_session(pb.CreateSessionRequest(
        backbone=pb.BackboneSpec(name="small_resnet", width=8), source_weights=path,
        data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=5, val_per_class=5, test_per_class=10, seed=0), seed=0))


def _delta_stage(**kw) -> pb.StageSpec:
    base = dict(name="delta", regularizer=pb.Regularizer(delta=pb.Delta(alpha=0.01, head_iterations=3, ablation_batches=1)),
                optimizer=pb.OptimizerSpec(kind=pb.OPTIMIZER_KIND_SGD, lr=0.01, momentum=0.9), iterations=3, batch_size=16,
                eval_every=0, log_every=1, seed=1, lr_schedule=pb.LrSchedule(constant=pb.ConstantLr()))
    base.update(kw)
    return pb.StageSpec(**base)


def test_every_phase_before_the_first_step_reports_start_progress_and_end_then_its_duration(session):
    events = list(run_stage(session, parse_stage(_delta_stage()), threading.Event()))
    kinds = [e.WhichOneof("event") for e in events]
    started = kinds.index("started")
    progress = [e.progress for e in events[:started] if e.WhichOneof("event") == "progress"]
    assert all(k == "progress" for k in kinds[:started])
    assert sorted({p.phase for p in progress}) == PRE_STEP
    for name in PRE_STEP:
        mine = [p for p in progress if p.phase == name]
        assert not mine[0].finished and mine[0].done == 0, f"{name} starts with an event before any work"
        assert mine[-1].finished and mine[-1].seconds >= 0
        assert [p.done for p in mine] == sorted(p.done for p in mine), f"{name} counts up"
    by_name = {p.phase: p for p in progress if p.finished}
    # the counts are the work done: every training image (5 x 10 classes) through the source
    # twice, every channel of the three aligned layers (8 + 16 + 32) ablated once
    assert by_name["bn_recalibration"].done == by_name["bn_recalibration"].total == 50
    assert by_name["feature_cache"].done == 50
    assert by_name["delta_probe"].done == by_name["delta_probe"].total == 8 + 16 + 32
    assert "re-run" in by_name["delta_probe"].detail
    assert 1 <= by_name["stability_estimate"].done <= stability.MAX_PRODUCTS
    summary = events[-1].summary
    assert [t.phase for t in summary.phases] == ["bn_recalibration", "delta_probe", "feature_cache", "stability_estimate"]
    assert all(t.seconds > 0 for t in summary.phases)
    assert summary.phases[3].detail.startswith("lambda_max")


def test_the_stability_estimate_stops_at_its_time_budget_after_its_minimum_products(session, monkeypatch):
    """With no time at all to spend, the power iteration stops at MIN_PRODUCTS and says it did
    not converge (unless it converged first); with the usual budget it goes on."""
    monkeypatch.setattr(stability, "BUDGET_SHARE", 0.0)
    monkeypatch.setattr(stability, "MIN_BUDGET_SECONDS", 0.0)
    monkeypatch.setattr(stability, "TOLERANCE", -1.0)  # never converged (not even an exact repeat): only the budget or the products stop it
    stage = _delta_stage(regularizer=pb.Regularizer(feature_map=pb.FeatureMap(alpha=0.01)))
    summary = list(run_stage(session, parse_stage(stage), threading.Event()))[-1].summary
    assert summary.stability.products == stability.MIN_PRODUCTS
    assert not summary.stability.converged and summary.stability.budget_seconds == 0.0
    assert "stopped by the time budget" in summary.phases[-1].detail
    monkeypatch.setattr(stability, "MIN_BUDGET_SECONDS", 1e9)
    summary = list(run_stage(session, parse_stage(stage), threading.Event()))[-1].summary
    assert summary.stability.products == stability.MAX_PRODUCTS
    assert "stopped by the products" in summary.phases[-1].detail


def test_the_time_budget_is_a_share_of_the_stage_estimated_from_the_first_gradient():
    budget = stability._Budget(iterations=1000, batch_size=64)
    budget.first_gradient_took(0.1)  # on 8 images: a 64-image step ~0.8 s, the stage ~800 s
    assert budget.seconds == pytest.approx(stability.BUDGET_SHARE * 1000 * 0.8)
    short = stability._Budget(iterations=2, batch_size=8)
    short.first_gradient_took(0.1)
    assert short.seconds == stability.MIN_BUDGET_SECONDS


def test_a_feature_cache_over_its_budget_says_what_it_would_need(session):
    per_image = (8 * 28 * 28 + 16 * 14 * 14 + 32 * 7 * 7) * session.precision.source_bytes  # the three layers' maps
    budget = math.ceil(75 * per_image / 2**20)
    assert 50 * per_image <= budget * 2**20 < 100 * per_image  # 50 images' maps fit, 100 do not
    stage = _delta_stage(regularizer=pb.Regularizer(feature_map=pb.FeatureMap(alpha=0.01)), feature_cache_mb=budget)
    summary = list(run_stage(session, parse_stage(stage), threading.Event()))[-1].summary
    cache = [t for t in summary.phases if t.phase == "feature_cache"][0]
    assert summary.feature_cache_bytes > 0 and "MiB" in cache.detail
    session.data.train.x = session.data.train.x.repeat(2, 1, 1, 1)
    session.data.train.y = session.data.train.y.repeat(2)
    try:
        summary = list(run_stage(session, parse_stage(stage), threading.Event()))[-1].summary
    finally:
        session.data.train.x, session.data.train.y = session.data.train.x[:50], session.data.train.y[:50]
    cache = [t for t in summary.phases if t.phase == "feature_cache"][0]
    assert summary.feature_cache_bytes == 0 and summary.status == pb.STAGE_STATUS_COMPLETED
    assert f"not cached: 100 images' maps need {100 * per_image / 2**20:.1f} MiB, over the budget of {budget} MiB (featureCacheMb)" in cache.detail


def test_progress_reaches_the_reader_of_a_stream_while_the_phase_runs(session):
    """On a worker's stream a phase's events are handed over as they happen: the reader holds the
    probe's first event while the probe is still running (it waits here until the reader says so)."""
    seen_start = threading.Event()
    compute = ComputeThread()
    from afa_worker.regularizers import delta

    original = delta._layer_rises

    def slow_layer(*args, **kwargs):
        assert seen_start.wait(60), "the reader never saw the probe's start while it ran"
        return original(*args, **kwargs)

    delta._layer_rises = slow_layer
    try:
        for event in compute.stream(lambda: run_stage(session, parse_stage(_delta_stage()), threading.Event()), lambda: None):
            if event.WhichOneof("event") == "progress" and event.progress.phase == "delta_probe":
                seen_start.set()
    finally:
        delta._layer_rises = original
        compute.close()
    assert seen_start.is_set()


@pytest.mark.parametrize("error", [
    lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    lambda: RuntimeError("[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"),
])
def test_a_step_that_does_not_fit_the_device_is_refused_naming_the_batch_size_and_the_session_goes_on(session, monkeypatch, error):
    from afa_worker import trainer
    from afa_worker.errors import SpecError

    before = {k: v.clone() for k, v in session.target.state_dict().items()}
    real_step, calls = trainer.train_step, []

    def step_that_runs_out(run, step):
        calls.append(step)
        if step == 1:
            real_step(run, step)  # half a step's work done (BN statistics moved), then the allocation fails
            raise error()
        return real_step(run, step)

    monkeypatch.setattr(trainer, "train_step", step_that_runs_out)
    stage = _delta_stage(regularizer=pb.Regularizer(none=pb.NoRegularizer()))
    with pytest.raises(SpecError) as refused:
        list(run_stage(session, parse_stage(stage), threading.Event()))
    assert refused.value.field == "stage.batch_size"
    assert "a training step of 16 images of 1x28x28 does not fit in the memory of cpu (step 1:" in str(refused.value)
    assert "lower the batch size" in str(refused.value)
    after = session.target.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the session keeps the weights it had"
    monkeypatch.setattr(trainer, "train_step", real_step)
    assert list(run_stage(session, parse_stage(stage), threading.Event()))[-1].summary.status == pb.STAGE_STATUS_COMPLETED
