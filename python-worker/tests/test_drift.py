"""The target's drift from the session's original source (StageSummary.drift), against plain
safetensors arithmetic on the files: the weight distance, zero for a target that has not moved,
and measured from the original source even after AFA's promote."""

from __future__ import annotations

import threading

import torch
from safetensors.torch import load_file

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.checkpoint import save_checkpoint
from afa_worker.drift import measure_drift
from afa_worker.session import create_session
from afa_worker.stage_plan import parse_stage
from afa_worker.trainer import run_stage


def _session(weights: str):
    return create_session(pb.CreateSessionRequest(
        backbone=pb.BackboneSpec(name="small_resnet", width=4), source_weights=weights,
        data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=5, val_per_class=5, seed=0), seed=0))


def _source(tmp_path) -> str:
    session = create_session(pb.CreateSessionRequest(backbone=pb.BackboneSpec(name="small_resnet", width=4),
                                                     data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=5), seed=3))
    path, *_ = save_checkpoint(session.target, str(tmp_path / "source"), {})
    return path


def _stage(measure: bool, regularizer: pb.Regularizer | None = None) -> pb.StageSpec:
    return pb.StageSpec(name="s", regularizer=regularizer or pb.Regularizer(none=pb.NoRegularizer(weight_decay=0)),
                        optimizer=pb.OptimizerSpec(kind=pb.OPTIMIZER_KIND_SGD, lr=0.05, momentum=0.9), iterations=5,
                        batch_size=16, seed=0, measure_drift=measure, no_stability_estimate=True)


def test_a_target_that_has_not_moved_has_drifted_nowhere(tmp_path):
    drift = measure_drift(_session(_source(tmp_path)))
    assert drift.weight_distance == 0.0 and drift.weight_distance_relative == 0.0
    assert [layer.layer for layer in drift.layers] == ["layer1.0", "layer2.0", "layer3.0"]
    assert all(layer.mean_squared == 0.0 for layer in drift.layers)  # same weights, same recalibrated statistics
    assert drift.images == 50  # the validation split: 5 per class


def test_the_weight_distance_is_the_norm_of_the_change_from_the_source_file(tmp_path):
    source = _source(tmp_path)
    session = _session(source)
    summary = list(run_stage(session, parse_stage(_stage(True)), threading.Event()))[-1].summary
    target, *_ = save_checkpoint(session.target, str(tmp_path / "target"), {})
    before, after = load_file(source), load_file(target)
    params = {name for name, _ in session.target.named_parameters() if not name.startswith("fc.")}
    squared = sum(float((after[k].double() - before[k].double()).pow(2).sum()) for k in params)
    norm = sum(float(before[k].double().pow(2).sum()) for k in params)
    assert summary.drift.weight_distance > 0
    assert abs(summary.drift.weight_distance - squared**0.5) <= 1e-4 * squared**0.5
    assert abs(summary.drift.weight_distance_relative - (squared / norm) ** 0.5) <= 1e-4 * (squared / norm) ** 0.5
    assert all(layer.mean_squared > 0 and layer.relative > 0 for layer in summary.drift.layers)


def test_drift_is_measured_from_the_original_source_after_a_promote_and_only_when_asked(tmp_path):
    session = _session(_source(tmp_path))
    plain = list(run_stage(session, parse_stage(_stage(False)), threading.Event()))[-1].summary
    assert not plain.HasField("drift")
    session.promote_target_to_source()  # the stage-II source is now the moved target
    stage = parse_stage(_stage(True, pb.Regularizer(feature_map=pb.FeatureMap(alpha=1e-6))))
    after = list(run_stage(session, stage, threading.Event()))[-1].summary
    with torch.no_grad():
        moved = sum(float((p.double() - session.origin_state[n].double()).pow(2).sum())
                    for n, p in session.target.named_parameters() if not n.startswith("fc."))
    assert abs(after.drift.weight_distance - moved**0.5) <= 1e-4 * moved**0.5  # from the first source, not the promoted one
