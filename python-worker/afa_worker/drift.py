"""How far the target has moved from the session's original source at the end of a stage: the
distance of the backbone's weights, and the discrepancy of the aligned layers' feature maps. Read
against the accuracy a method gains over fine-tuning, it says whether alignment pays where
fine-tuning drifts far (the regime study, studies/regimes.ts).

The reference is the source the session was created from, not the promoted one of AFA's stage II,
so every method of a study is measured from the same point."""

from __future__ import annotations

import copy

import torch

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.batches import ordered_batches
from afa_worker.cancel import check_cancelled
from afa_worker.features import FeatureTap
from afa_worker.session import Session, recalibrate_bn, recalibration_batches

__all__ = ["measure_drift", "MAX_DRIFT_IMAGES"]

#: Images the feature discrepancy is measured on (the first of the validation split).
MAX_DRIFT_IMAGES = 256


@torch.no_grad()
def _weight_distance(session: Session) -> tuple[float, float]:
    origin = session.origin_state or {}
    squared, reference = 0.0, 0.0
    for name, param in session.target.named_parameters():
        start = origin.get(name)
        if start is None or start.shape != param.shape:
            continue  # the head (new), or a tensor the source file did not have
        start = start.to(param.device, torch.float32)
        squared += float((param.detach().float() - start).pow(2).sum())
        reference += float(start.pow(2).sum())
    return squared**0.5, (squared / reference) ** 0.5 if reference > 0 else 0.0


@torch.no_grad()
def _layer_drift(session: Session, images: torch.Tensor) -> list[pb.LayerDrift]:
    # Copies of the target and of the original source, both with their batch norms recalibrated on
    # the same target images: the discrepancy is then the weights' doing alone (it is exactly 0 for
    # a target that has not moved), not the running statistics' the target keeps while training.
    current = copy.deepcopy(session.target)
    reference = copy.deepcopy(session.target)
    state = {k: v for k, v in (session.origin_state or {}).items() if k in reference.state_dict()}
    reference.load_state_dict(state, strict=False)
    for model in (current, reference):
        recalibrate_bn(model, ordered_batches(session.data, 64, recalibration_batches(len(session.data.train), 64)))
    sums = {name: [0.0, 0.0, 0] for name in session.layers}  # sum (F_t - F_s)^2, sum F_s^2, elements
    with FeatureTap(current, session.layers) as target_tap, FeatureTap(reference, session.layers) as source_tap:
        for start in range(0, len(images), 64):
            check_cancelled("measuring the drift from the source")
            x = session.data.normalise(images[start:start + 64])
            current(x)
            reference(x)
            ft, fs = target_tap.take(), source_tap.take()
            for name in session.layers:
                t, s = ft[name].float(), fs[name].float()
                sums[name][0] += float((t - s).pow(2).sum())
                sums[name][1] += float(s.pow(2).sum())
                sums[name][2] += s.numel()
    return [pb.LayerDrift(layer=name, mean_squared=d / max(1, n), relative=d / s if s > 0 else 0.0)
            for name, (d, s, n) in sums.items()]


def measure_drift(session: Session) -> pb.Drift | None:
    """The target against the session's original source; None for a session without one."""
    if session.origin_state is None:
        return None
    split = session.data.val if session.data.val is not None and len(session.data.val) else session.data.train
    images = split.x[:MAX_DRIFT_IMAGES]
    distance, relative = _weight_distance(session)
    layers = _layer_drift(session, images) if session.layers else []
    return pb.Drift(weight_distance=distance, weight_distance_relative=relative, layers=layers, images=len(images))
