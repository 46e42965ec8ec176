"""Everything a stage sets up before its first step, and takes down after its last: the source's
batch-norm recalibration, the regulariser, the optimiser, the feature taps and the source feature
cache. ``prepare_stage`` returns them as a ``PreparedStage``, a context manager that removes the hooks
and unfreezes the backbone on exit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from afa_worker.backbones import head_module
from afa_worker.batches import ordered_batches, shuffled_indices
from afa_worker.cancel import check_cancelled, interruptible
from afa_worker.features import FeatureTap
from afa_worker.regularizers import Regularizer, RegularizerContext, build_regularizer
from afa_worker.phases import phase
from afa_worker.session import Session, recalibrate_bn, recalibration_batches
from afa_worker.stage_plan import StagePlan

__all__ = ["PreparedStage", "StageOptimizer", "prepare_stage", "feature_cache_bytes"]


class StageOptimizer:
    """The optimiser over backbone, head and attention parameters, each group with its base lr."""

    def __init__(self, plan: StagePlan, target: nn.Module, reg: Regularizer):
        head = head_module(target)
        head_ids = {id(p) for p in head.parameters()}
        backbone = [p for p in target.parameters() if id(p) not in head_ids and p.requires_grad]
        o = plan.optimizer
        decay = reg.weight_decay + o.weight_decay
        groups = [{"params": backbone, "lr": o.lr, "weight_decay": decay},
                  {"params": list(head.parameters()), "lr": o.lr * plan.head_lr_multiplier, "weight_decay": decay},
                  {"params": list(reg.parameters()), "lr": o.lr * plan.attention_lr_multiplier,
                   "weight_decay": o.weight_decay}]
        groups = [g for g in groups if g["params"]]
        self.base_lrs = [g["lr"] for g in groups]
        if o.kind == "adam":
            self.opt: torch.optim.Optimizer = torch.optim.Adam(groups, lr=o.lr)
        else:
            self.opt = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)

    def set_factor(self, factor: float) -> float:
        """Scales every group's lr to ``factor`` x its base; returns the backbone's lr."""
        for group, base in zip(self.opt.param_groups, self.base_lrs):
            group["lr"] = base * factor
        return self.base_lrs[0] * factor

    @property
    def trainable_parameters(self) -> int:
        return sum(p.numel() for g in self.opt.param_groups for p in g["params"])


@dataclass
class PreparedStage:
    session: Session
    plan: StagePlan
    reg: Regularizer
    optimizer: StageOptimizer
    gen: torch.Generator
    batches: Iterator[torch.Tensor]
    target_tap: FeatureTap | None = None
    source_tap: FeatureTap | None = None
    cached_maps: dict[str, torch.Tensor] | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def head(self) -> nn.Linear:
        return head_module(self.session.target)

    @property
    def trainable_parameters(self) -> int:
        return self.optimizer.trainable_parameters

    @property
    def attention_parameters(self) -> int:
        return sum(p.numel() for p in self.reg.parameters())

    @property
    def feature_cache_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.cached_maps.values()) if self.cached_maps else 0

    def __enter__(self) -> PreparedStage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for tap in (self.target_tap, self.source_tap):
            if tap is not None:
                tap.close()
        _set_backbone_frozen(self.session, False)


def _labelled_batches(session: Session, plan: StagePlan) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Labelled target batches on their own seed, for DELTA's channel-importance probe."""
    train = session.data.train
    for idx in shuffled_indices(len(train), plan.batch_size, torch.Generator().manual_seed(plan.seed + 1)):
        yield session.data.normalise(train.x[idx.to(train.x.device)]), train.y[idx.to(train.y.device)]


def _regularizer(session: Session, plan: StagePlan) -> Regularizer:
    ctx = RegularizerContext(session.target, session.source, session.layers, session.layer_shapes, session.head_name,
                             lambda: _labelled_batches(session, plan))
    # Attention modules are initialised from the stage seed, not from whatever the global RNG holds.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        reg = build_regularizer(plan.regularizer, ctx)
    return reg.to(session.device)


def _set_backbone_frozen(session: Session, frozen: bool) -> None:
    head_ids = {id(p) for p in head_module(session.target).parameters()}
    for p in session.target.parameters():
        if id(p) not in head_ids:
            p.requires_grad_(not frozen)


def feature_cache_bytes(session: Session) -> int:
    """What the source's maps of every training image take: images x aligned elements x bytes."""
    per_image = sum(c * h * w for c, h, w in session.layer_shapes.values())
    return len(session.data.train) * per_image * session.precision.source_bytes


@torch.no_grad()
def _source_feature_cache(session: Session, batch_size: int, budget_mb: int) -> dict[str, torch.Tensor] | None:
    """The source's maps of every training image, when they fit the budget; else None, and the
    phase says what the cache would need (at 224 px one image's maps at the paper's four layers
    are ~6 MB, so a budget decides between caching and running the source every step).

    Valid because the frozen source is in eval mode (deterministic per image) and the inputs are
    not augmented: a step then reads its batch's rows instead of running the source forward."""
    n, need = len(session.data.train), feature_cache_bytes(session)
    with phase("feature_cache", n, "images") as tracker:
        if need > budget_mb * 2**20:
            tracker.detail = (f"not cached: {n} images' maps need {need / 2**20:.1f} MiB, over the budget of {budget_mb} MiB "
                              "(featureCacheMb); the source runs every step")
            return None
        cache: dict[str, list[torch.Tensor]] = {name: [] for name in session.layers}
        with (FeatureTap(session.source, session.layers) as tap, session.precision.source_autocast(),
              interruptible("caching the source's feature maps", session.source)):
            for x in ordered_batches(session.data, batch_size):
                check_cancelled("caching the source's feature maps")
                session.source(x)
                for name, value in tap.take().items():
                    cache[name].append(value)
                tracker.advance(len(x))
        tracker.detail = f"{need / 2**20:.1f} MiB"
    return {name: torch.cat(parts) for name, parts in cache.items()}


def prepare_stage(session: Session, plan: StagePlan) -> PreparedStage:
    """Sets the stage up; on an error part-way, what was set up is taken down again."""
    if session.source is not None and plan.regularizer.entry.module.needs_source_features:
        batches = recalibration_batches(len(session.data.train), plan.batch_size)
        recalibrate_bn(session.source, ordered_batches(session.data, plan.batch_size, batches),
                       total=min(len(session.data.train), batches * plan.batch_size))
    reg = _regularizer(session, plan)
    _set_backbone_frozen(session, reg.freezes_backbone)  # before the optimiser, which skips frozen weights
    gen = torch.Generator().manual_seed(plan.seed)
    run = PreparedStage(session, plan, reg, StageOptimizer(plan, session.target, reg), gen,
                   shuffled_indices(len(session.data.train), plan.batch_size, gen))
    try:
        if reg.needs_source_features and session.layers:
            if not session.augment and plan.feature_cache_mb:
                run.cached_maps = _source_feature_cache(session, plan.batch_size, plan.feature_cache_mb)
            run.target_tap = FeatureTap(session.target, session.layers)
            run.source_tap = FeatureTap(session.source, session.layers)
    except BaseException:
        run.close()
        raise
    # A fixed extractor (L2-FE) keeps the source's BN statistics too.
    session.target.train(not reg.freezes_backbone)
    reg.train()
    return run
