"""A stage as the trainer reads it: the protobuf ``StageSpec`` parsed and validated once, at the
servicer boundary, into plain frozen dataclasses with the worker's defaults applied. Every error
names the field and, where there is a closed set, the valid values."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.contract import check_registry
from afa_worker.errors import SpecError
from afa_worker.limits import check_chars, check_finite, check_max
from afa_worker.regularizers import RegularizerPlan, parse_regularizer

__all__ = ["StagePlan", "OptimizerPlan", "LrSchedulePlan", "parse_stage", "parse_lr_schedule", "DEFAULT_FEATURE_CACHE_MB"]

DEFAULT_FEATURE_CACHE_MB = 1024
_OPTIMIZERS = {pb.OPTIMIZER_KIND_SGD: "sgd", pb.OPTIMIZER_KIND_ADAM: "adam"}


@dataclass(frozen=True)
class OptimizerPlan:
    kind: str  # "sgd" | "adam"
    lr: float
    momentum: float
    weight_decay: float
    nesterov: bool


@dataclass(frozen=True)
class LrSchedulePlan:
    """The multiplier of the base lr at each step: constant, x gamma at fractions, or cosine."""

    kind: str
    at_fractions: tuple[float, ...] = ()
    gamma: float = 1.0
    min_fraction: float = 0.0

    def factor(self, step: int, total: int) -> float:
        """Multiplier of the base lr at 0-based ``step`` of ``total``."""
        if self.kind == "step":
            return self.gamma ** sum(1 for f in self.at_fractions if step >= int(f * total))
        if self.kind == "cosine":
            return self.min_fraction + (1 - self.min_fraction) * 0.5 * (1 + math.cos(math.pi * step / max(1, total)))
        return 1.0


@dataclass(frozen=True)
class StagePlan:
    name: str
    regularizer: RegularizerPlan
    optimizer: OptimizerPlan
    lr_schedule: LrSchedulePlan
    iterations: int
    batch_size: int
    head_l2: float
    eval_every: int
    log_every: int
    seed: int
    restore_best: bool
    head_lr_multiplier: float
    attention_lr_multiplier: float
    #: MiB budget of the source feature cache; 0 = no cache.
    feature_cache_mb: int
    #: Images in the attention snapshot at the end of the stage; 0 = none.
    attention_images: int = 0
    #: > 0: alpha = this x the stability limit estimated at the stage's start.
    alpha_relative: float = 0.0
    #: Estimate lambda_max and the stability limit at the start (stages with a term).
    estimate_stability: bool = True
    #: Measure the target's drift from the session's original source at the end.
    measure_drift: bool = False

    @property
    def check_every(self) -> int:
        """Steps between divergence checks (each reads the loss from the device)."""
        return max(1, min(x for x in (self.log_every, self.eval_every, 10) if x > 0))


def _in_range(value: float, field: str, low: float, high: float, *, low_open: bool, high_open: bool,
              each: bool = False) -> float:
    inside = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not inside:  # NaN is never inside
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise SpecError(field, f"{'each ' if each else ''}must be in {interval}, got {value}")
    return float(value)


def _optimizer(o: pb.OptimizerSpec) -> OptimizerPlan:
    kind = _OPTIMIZERS.get(o.kind)
    if kind is None:
        raise SpecError("stage.optimizer.kind", f"unknown optimizer {o.kind}", list(_OPTIMIZERS.values()))
    return OptimizerPlan(kind, check_finite(o.lr, "stage.optimizer.lr", positive=True),
                         _in_range(o.momentum, "stage.optimizer.momentum", 0, 1, low_open=False, high_open=True),
                         check_finite(o.weight_decay, "stage.optimizer.weight_decay"), bool(o.nesterov and o.momentum > 0))


def _step(m: pb.StepLr) -> LrSchedulePlan:
    fractions = tuple(_in_range(f, "stage.lr_schedule.step.at_fractions", 0, 1, low_open=True, high_open=True, each=True)
                      for f in m.at_fractions)
    return LrSchedulePlan("step", fractions, check_finite(m.gamma, "stage.lr_schedule.step.gamma", positive=True))


_LR_SCHEDULES: dict[str, Callable[[Any], LrSchedulePlan]] = {
    "constant": lambda _m: LrSchedulePlan("constant"),
    "step": _step,
    "cosine": lambda m: LrSchedulePlan("cosine", min_fraction=_in_range(
        m.min_fraction, "stage.lr_schedule.cosine.min_fraction", 0, 1, low_open=False, high_open=False)),
}
check_registry(_LR_SCHEDULES, pb.LrSchedule, "kind")


def parse_lr_schedule(m: pb.LrSchedule) -> LrSchedulePlan:
    kind = m.WhichOneof("kind")
    return _LR_SCHEDULES[kind](getattr(m, kind)) if kind else LrSchedulePlan("constant")


def _count(value: int, field: str, *, allow_zero: bool = False) -> int:
    if value < (0 if allow_zero else 1):
        raise SpecError(field, f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return int(value)


def _alpha_relative(stage: pb.StageSpec, regularizer: RegularizerPlan, optimizer: OptimizerPlan) -> float:
    """The relative strength, refused where no limit can be estimated or the alpha is given twice."""
    value = check_finite(stage.alpha_relative, "stage.alpha_relative")
    if not value:
        return 0.0
    module = regularizer.entry.module
    if not module.has_term or module.freezes_backbone:
        raise SpecError("stage.alpha_relative", f"needs a regulariser with a term in the backbone weights, not "
                                                f"{regularizer.kind}", ["l2sp", "feature_map", "delta", "afa_spatial", "afa_channel"])
    if regularizer.options.get("alpha"):
        raise SpecError("stage.alpha_relative", f"the regulariser's own alpha must be 0 with a relative alpha, got "
                                                f"{regularizer.options['alpha']}")
    if optimizer.kind != "sgd":
        raise SpecError("stage.alpha_relative", "needs SGD: Adam's step is not lr x gradient, so it has no such limit",
                        ["sgd"])
    if stage.no_stability_estimate:
        raise SpecError("stage.no_stability_estimate", "a relative alpha needs the stability estimate")
    return value


def parse_stage(stage: pb.StageSpec) -> StagePlan:
    """Validates every field of the stage and applies the worker's defaults."""
    regularizer, optimizer = parse_regularizer(stage.regularizer), _optimizer(stage.optimizer)
    return StagePlan(
        name=check_chars(stage.name, "stage.name", "name_chars"),
        regularizer=regularizer,
        optimizer=optimizer,
        lr_schedule=parse_lr_schedule(stage.lr_schedule),
        iterations=check_max(_count(stage.iterations, "stage.iterations"), "stage.iterations", "iterations"),
        batch_size=check_max(_count(stage.batch_size, "stage.batch_size"), "stage.batch_size", "batch_size"),
        head_l2=check_finite(stage.head_l2, "stage.head_l2"),
        eval_every=int(stage.eval_every),
        log_every=int(stage.log_every),
        seed=int(stage.seed),
        restore_best=bool(stage.restore_best),
        head_lr_multiplier=check_finite(stage.head_lr_multiplier, "stage.head_lr_multiplier") or 1.0,
        attention_lr_multiplier=check_finite(stage.attention_lr_multiplier, "stage.attention_lr_multiplier") or 1.0,
        feature_cache_mb=0 if stage.no_feature_cache else check_max(
            stage.feature_cache_mb, "stage.feature_cache_mb", "feature_cache_mb") or DEFAULT_FEATURE_CACHE_MB,
        attention_images=check_max(stage.attention_images, "stage.attention_images", "attention_images"),
        alpha_relative=_alpha_relative(stage, regularizer, optimizer),
        estimate_stability=not stage.no_stability_estimate,
        measure_drift=bool(stage.measure_drift),
    )
