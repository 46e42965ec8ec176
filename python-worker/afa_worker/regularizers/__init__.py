"""Regulariser registry: proto oneof name -> builder. One small module per regulariser; the
trainer owns the hooks and hands each one the target and source feature maps."""

from __future__ import annotations

from collections.abc import Callable

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.errors import SourceMissingError, SpecError
from afa_worker.regularizers.afa import AttentiveChannelTransfer, AttentiveSpatialTransfer
from afa_worker.regularizers.base import Regularizer, RegularizerContext
from afa_worker.regularizers.delta import DELTA, channel_importance
from afa_worker.regularizers.feature_map import FeatureMapAlignment
from afa_worker.regularizers.l2sp import L2SP
from afa_worker.regularizers.plain import L2FE, NoRegularizer

__all__ = ["REGULARIZERS", "build_regularizer", "Regularizer", "RegularizerContext", "NEEDS_SOURCE"]

# Worker-side defaults for DELTA's importance probe when the request leaves them 0.
DELTA_HEAD_ITERATIONS = 100
DELTA_ABLATION_BATCHES = 2
DELTA_TEMPERATURE = 5.0


def _alpha(value: float, field: str) -> float:
    if not value >= 0 or value == float("inf"):  # also catches NaN
        raise SpecError(field, f"alpha must be a finite number >= 0, got {value}")
    return value


def _none(msg: pb.NoRegularizer, ctx: RegularizerContext) -> Regularizer:
    if not msg.weight_decay >= 0:
        raise SpecError("stage.regularizer.none.weight_decay", f"must be >= 0, got {msg.weight_decay}")
    return NoRegularizer(weight_decay=msg.weight_decay)


def _l2fe(_msg: pb.L2Fe, _ctx: RegularizerContext) -> Regularizer:
    return L2FE()


def _l2sp(msg: pb.L2Sp, ctx: RegularizerContext) -> Regularizer:
    return L2SP(_alpha(msg.alpha, "stage.regularizer.l2sp.alpha"), ctx.target, ctx.source, ctx.head_name)


def _feature_map(msg: pb.FeatureMap, _ctx: RegularizerContext) -> Regularizer:
    return FeatureMapAlignment(_alpha(msg.alpha, "stage.regularizer.feature_map.alpha"))


def _delta(msg: pb.Delta, ctx: RegularizerContext) -> Regularizer:
    alpha = _alpha(msg.alpha, "stage.regularizer.delta.alpha")
    temperature = msg.temperature or DELTA_TEMPERATURE
    if not temperature > 0:
        raise SpecError("stage.regularizer.delta.temperature", f"must be > 0, got {msg.temperature}")
    assert ctx.batches is not None
    # The importance is measured on the source network, whose maps the target is pulled towards.
    weights = channel_importance(ctx.source, ctx.head_name, ctx.layers, ctx.batches(),
                                 msg.head_iterations or DELTA_HEAD_ITERATIONS,
                                 msg.ablation_batches or DELTA_ABLATION_BATCHES, temperature)
    return DELTA(alpha, weights)


def _afa_spatial(msg: pb.AfaSpatial, ctx: RegularizerContext) -> Regularizer:
    alpha = _alpha(msg.alpha, "stage.regularizer.afa_spatial.alpha")
    return AttentiveSpatialTransfer(alpha, ctx.layer_shapes, msg.hidden)


def _afa_channel(msg: pb.AfaChannel, ctx: RegularizerContext) -> Regularizer:
    alpha = _alpha(msg.alpha, "stage.regularizer.afa_channel.alpha")
    return AttentiveChannelTransfer(alpha, ctx.layer_shapes, msg.hidden)


REGULARIZERS: dict[str, Callable[..., Regularizer]] = {
    "none": _none,
    "l2fe": _l2fe,
    "l2sp": _l2sp,
    "feature_map": _feature_map,
    "delta": _delta,
    "afa_spatial": _afa_spatial,
    "afa_channel": _afa_channel,
}
NEEDS_SOURCE = {"l2sp", "feature_map", "delta", "afa_spatial", "afa_channel"}


def build_regularizer(spec: pb.Regularizer, ctx: RegularizerContext) -> Regularizer:
    kind = spec.WhichOneof("kind")
    if kind is None:
        raise SpecError("stage.regularizer", "no regulariser given", list(REGULARIZERS))
    if kind in NEEDS_SOURCE and ctx.source is None:
        raise SourceMissingError("stage.regularizer", f"{kind} aligns to a source model, and this session has none "
                                 "(create it with source_weights)")
    if kind in NEEDS_SOURCE - {"l2sp"} and not ctx.layers:
        raise SpecError("layers", f"{kind} aligns feature maps and the session has no aligned layers")
    return REGULARIZERS[kind](getattr(spec, kind), ctx)
