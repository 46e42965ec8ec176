"""Regulariser registry: one entry per kind of the proto's ``Regularizer.kind`` oneof (checked at
import). An entry names the kind's module, whose class attributes are the kind's facts (needs a
source, aligns feature maps, has attention), a parser that turns the proto message into validated
options at the servicer boundary, and a builder that makes the module at the start of a stage."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.contract import check_registry
from afa_worker.errors import SourceMissingError, SpecError
from afa_worker.limits import check_finite, check_float32, check_max
from afa_worker.regularizers.afa import AttentiveChannelTransfer, AttentiveSpatialTransfer
from afa_worker.regularizers.base import Regularizer, RegularizerContext
from afa_worker.regularizers.delta import DELTA, channel_importance
from afa_worker.regularizers.feature_map import FeatureMapAlignment
from afa_worker.regularizers.l2sp import L2SP
from afa_worker.regularizers.plain import L2FE, NoRegularizer

__all__ = ["REGULARIZERS", "RegularizerEntry", "RegularizerPlan", "parse_regularizer", "build_regularizer", "Regularizer",
           "RegularizerContext"]

# Worker-side defaults for DELTA's importance probe when the request leaves them 0.
DELTA_HEAD_ITERATIONS = 100
DELTA_ABLATION_BATCHES = 2
DELTA_TEMPERATURE = 5.0


@dataclass(frozen=True)
class RegularizerPlan:
    """A validated regulariser choice: its kind and the keyword options its builder takes."""

    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def entry(self) -> RegularizerEntry:
        return REGULARIZERS[self.kind]


@dataclass(frozen=True)
class RegularizerEntry:
    module: type[Regularizer]
    #: proto message of this kind, field path -> validated options.
    parse: Callable[[Any, str], dict[str, Any]]
    #: (context, **options) -> the module.
    build: Callable[..., Regularizer]


def _alpha(msg: Any, at: str) -> dict[str, Any]:
    if not math.isfinite(msg.alpha) or msg.alpha < 0:
        raise SpecError(f"{at}.alpha", f"alpha must be a finite number >= 0, got {msg.alpha}")
    return {"alpha": check_float32(msg.alpha, f"{at}.alpha")}


def _attentive(msg: Any, at: str) -> dict[str, Any]:
    return {**_alpha(msg, at), "hidden": check_max(msg.hidden, f"{at}.hidden", "hidden")}


def _channel(msg: pb.AfaChannel, at: str) -> dict[str, Any]:
    floor = msg.uniform_floor
    if not math.isfinite(floor) or not 0 <= floor <= 1:
        raise SpecError(f"{at}.uniform_floor", f"must be a number in [0, 1] (0 = the paper's ACT, 1 = uniform "
                                               f"weights), got {floor}")
    return {**_attentive(msg, at), "uniform_floor": floor}


def _delta(msg: pb.Delta, at: str) -> dict[str, Any]:
    temperature = check_finite(msg.temperature, f"{at}.temperature", positive=True) if msg.temperature else DELTA_TEMPERATURE
    return {**_alpha(msg, at), "temperature": temperature,
            "head_iterations": check_max(msg.head_iterations, f"{at}.head_iterations", "delta_head_iterations")
            or DELTA_HEAD_ITERATIONS,
            "ablation_batches": check_max(msg.ablation_batches, f"{at}.ablation_batches", "delta_ablation_batches")
            or DELTA_ABLATION_BATCHES}


def _build_delta(ctx: RegularizerContext, alpha: float, temperature: float, head_iterations: int,
                 ablation_batches: int) -> Regularizer:
    assert ctx.batches is not None
    # The importance is measured on the source network, whose maps the target is pulled towards.
    weights = channel_importance(ctx.source, ctx.head_name, ctx.layers, ctx.batches(), head_iterations,
                                 ablation_batches, temperature)
    return DELTA(alpha, weights)


REGULARIZERS: dict[str, RegularizerEntry] = {
    "none": RegularizerEntry(
        NoRegularizer, lambda m, at: {"weight_decay": check_finite(m.weight_decay, f"{at}.weight_decay")},
        lambda ctx, weight_decay: NoRegularizer(weight_decay=weight_decay)),
    "l2fe": RegularizerEntry(L2FE, lambda m, at: {}, lambda ctx: L2FE()),
    "l2sp": RegularizerEntry(L2SP, _alpha, lambda ctx, alpha: L2SP(alpha, ctx.target, ctx.source, ctx.head_name)),
    "feature_map": RegularizerEntry(FeatureMapAlignment, _alpha, lambda ctx, alpha: FeatureMapAlignment(alpha)),
    "delta": RegularizerEntry(DELTA, _delta, _build_delta),
    "afa_spatial": RegularizerEntry(AttentiveSpatialTransfer, _attentive,
                                   lambda ctx, alpha, hidden: AttentiveSpatialTransfer(alpha, ctx.layer_shapes, hidden)),
    "afa_channel": RegularizerEntry(AttentiveChannelTransfer, _channel,
                                   lambda ctx, alpha, hidden, uniform_floor:
                                   AttentiveChannelTransfer(alpha, ctx.layer_shapes, hidden, uniform_floor)),
}
check_registry(REGULARIZERS, pb.Regularizer, "kind")


def parse_regularizer(spec: pb.Regularizer, at: str = "stage.regularizer") -> RegularizerPlan:
    kind = spec.WhichOneof("kind")
    if kind is None:
        raise SpecError(at, "no regulariser given", list(REGULARIZERS))
    return RegularizerPlan(kind, REGULARIZERS[kind].parse(getattr(spec, kind), f"{at}.{kind}"))


def build_regularizer(plan: RegularizerPlan, ctx: RegularizerContext, at: str = "stage.regularizer") -> Regularizer:
    module = plan.entry.module
    if module.needs_source and ctx.source is None:
        raise SourceMissingError(at, f"{plan.kind} aligns to a source model, and this session has none "
                                     "(create it with source_weights)")
    if module.needs_source_features and not ctx.layers:
        raise SpecError("layers", f"{plan.kind} aligns feature maps and the session has no aligned layers")
    return plan.entry.build(ctx, **plan.options)
