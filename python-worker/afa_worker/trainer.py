"""One stage of training on a session: the objective

    CE(f(x; W_t), y) + alpha * Omega(x) + beta * 0.5 * ||W_fc||^2

with the stage's regulariser, optimiser and lr schedule, streaming StageEvent messages. Metrics
are accumulated on the device and read only at the reporting cadence; cancellation is checked
every step."""

from __future__ import annotations

import contextlib
import copy
import math
import threading
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.attention import attention_entropy
from afa_worker.backbones import head_module
from afa_worker.data import TensorSplit
from afa_worker.errors import SpecError
from afa_worker.features import FeatureTap
from afa_worker.regularizers import Regularizer, RegularizerContext, build_regularizer
from afa_worker.session import Session, recalibrate_bn

__all__ = ["run_stage", "evaluate", "validate_stage", "lr_factor"]

EVAL_BATCH = 500
DEFAULT_FEATURE_CACHE_MB = 1024
# Batches of target images the source's BN statistics are recalibrated on (all of a few-label set).
RECALIBRATION_BATCHES = 200


def _finite_positive(value: float, field: str, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise SpecError(field, f"must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value}")


def validate_stage(stage: pb.StageSpec) -> None:
    if stage.iterations <= 0:
        raise SpecError("stage.iterations", f"must be > 0, got {stage.iterations}")
    if stage.batch_size <= 0:
        raise SpecError("stage.batch_size", f"must be > 0, got {stage.batch_size}")
    _finite_positive(stage.optimizer.lr, "stage.optimizer.lr")
    _finite_positive(stage.optimizer.weight_decay, "stage.optimizer.weight_decay", allow_zero=True)
    _finite_positive(stage.head_l2, "stage.head_l2", allow_zero=True)
    _finite_positive(stage.head_lr_multiplier, "stage.head_lr_multiplier", allow_zero=True)
    _finite_positive(stage.attention_lr_multiplier, "stage.attention_lr_multiplier", allow_zero=True)
    if not 0 <= stage.optimizer.momentum < 1:
        raise SpecError("stage.optimizer.momentum", f"must be in [0, 1), got {stage.optimizer.momentum}")
    if stage.optimizer.kind not in (pb.OPTIMIZER_KIND_SGD, pb.OPTIMIZER_KIND_ADAM):
        raise SpecError("stage.optimizer.kind", f"unknown optimizer {stage.optimizer.kind}", ["sgd", "adam"])
    which = stage.lr_schedule.WhichOneof("kind")
    if which == "step":
        for f in stage.lr_schedule.step.at_fractions:
            if not 0 < f < 1:
                raise SpecError("stage.lr_schedule.step.at_fractions", f"each must be in (0, 1), got {f}")
        _finite_positive(stage.lr_schedule.step.gamma, "stage.lr_schedule.step.gamma")
    elif which == "cosine" and not 0 <= stage.lr_schedule.cosine.min_fraction <= 1:
        raise SpecError("stage.lr_schedule.cosine.min_fraction", "must be in [0, 1]")
    if stage.regularizer.WhichOneof("kind") is None:
        raise SpecError("stage.regularizer", "no regulariser given",
                        ["none", "l2fe", "l2sp", "feature_map", "delta", "afa_spatial", "afa_channel"])


def lr_factor(schedule: pb.LrSchedule, step: int, total: int) -> float:
    """Multiplier of the base lr at 0-based ``step`` of ``total``."""
    which = schedule.WhichOneof("kind")
    if which == "step":
        passed = sum(1 for f in schedule.step.at_fractions if step >= int(f * total))
        return schedule.step.gamma**passed
    if which == "cosine":
        low = schedule.cosine.min_fraction
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * step / max(1, total)))
    return 1.0


def _batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Indices of successive random permutations, wrapping across epochs."""
    buffer = torch.empty(0, dtype=torch.long)
    while True:
        while len(buffer) < batch_size:
            buffer = torch.cat([buffer, torch.randperm(n, generator=gen)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


def _augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per image, on tensors."""
    b, _c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)  # (B, C, H, W) in channels-last memory, the model's layout


@torch.no_grad()
def evaluate(session: Session, split: TensorSplit, batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    model = session.target
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=session.device)
    correct = torch.zeros((), device=session.device, dtype=torch.long)
    try:
        for start in range(0, len(split), batch_size):
            x = session.data.normalise(split.x[start:start + batch_size])
            y = split.y[start:start + batch_size]
            with session.precision.train_autocast():
                logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
    finally:
        model.train(was_training)
    n = max(1, len(split))
    return float(loss_sum) / n, float(correct) / n


class _Optimizer:
    """The optimiser over target, head and attention parameters, with per-group base lrs."""

    def __init__(self, stage: pb.StageSpec, session: Session, reg: Regularizer):
        head = head_module(session.target)
        head_ids = {id(p) for p in head.parameters()}
        backbone = [p for p in session.target.parameters() if id(p) not in head_ids and p.requires_grad]
        decay = reg.weight_decay + stage.optimizer.weight_decay
        lr = stage.optimizer.lr
        head_lr = lr * (stage.head_lr_multiplier or 1.0)
        attention_lr = lr * (stage.attention_lr_multiplier or 1.0)
        groups = [{"params": backbone, "lr": lr, "weight_decay": decay},
                  {"params": list(head.parameters()), "lr": head_lr, "weight_decay": decay},
                  {"params": list(reg.parameters()), "lr": attention_lr, "weight_decay": stage.optimizer.weight_decay}]
        groups = [g for g in groups if g["params"]]
        self.base_lrs = [g["lr"] for g in groups]
        if stage.optimizer.kind == pb.OPTIMIZER_KIND_ADAM:
            self.opt: torch.optim.Optimizer = torch.optim.Adam(groups, lr=lr)
        else:
            self.opt = torch.optim.SGD(groups, lr=lr, momentum=stage.optimizer.momentum,
                                       nesterov=stage.optimizer.nesterov and stage.optimizer.momentum > 0)

    def set_factor(self, factor: float) -> float:
        for group, base in zip(self.opt.param_groups, self.base_lrs):
            group["lr"] = base * factor
        return self.base_lrs[0] * factor


def _regularizer(session: Session, stage: pb.StageSpec, gen: torch.Generator) -> Regularizer:
    train = session.data.train

    def labelled_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        probe_gen = torch.Generator().manual_seed(stage.seed + 1)
        for idx in _batches(len(train), stage.batch_size, probe_gen):
            yield session.data.normalise(train.x[idx.to(train.x.device)]), train.y[idx.to(train.y.device)]

    ctx = RegularizerContext(session.target, session.source, session.layers, session.layer_shapes,
                             session.head_name, labelled_batches)
    # Attention modules are initialised from the stage seed, not from whatever the global RNG holds.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stage.seed)
        reg = build_regularizer(stage.regularizer, ctx)
    return reg.to(session.device)


def _set_backbone_frozen(session: Session, frozen: bool) -> None:
    head_ids = {id(p) for p in head_module(session.target).parameters()}
    for p in session.target.parameters():
        if id(p) not in head_ids:
            p.requires_grad_(not frozen)


def _ordered_batches(session: Session, batch_size: int, limit: int | None = None) -> Iterator[torch.Tensor]:
    train = session.data.train
    for i, start in enumerate(range(0, len(train), batch_size)):
        if limit is not None and i >= limit:
            return
        yield session.data.normalise(train.x[start:start + batch_size])


@torch.no_grad()
def _source_feature_cache(session: Session, batch_size: int, budget_mb: int) -> dict[str, torch.Tensor] | None:
    """The source's maps of every training image, when they fit the budget; else None.

    Valid because the frozen source is in eval mode (deterministic per image) and the inputs are
    not augmented: a step then reads its batch's rows instead of running the source forward."""
    n = len(session.data.train)
    need = n * sum(c * h * w for c, h, w in session.layer_shapes.values()) * session.precision.source_bytes
    if need > budget_mb * 2**20:
        return None
    cache: dict[str, list[torch.Tensor]] = {name: [] for name in session.layers}
    with FeatureTap(session.source, session.layers) as tap, session.precision.source_autocast():
        for x in _ordered_batches(session, batch_size):
            session.source(x)
            for name, value in tap.take().items():
                cache[name].append(value)
    return {name: torch.cat(parts) for name, parts in cache.items()}


def run_stage(session: Session, stage: pb.StageSpec, cancel: threading.Event) -> Iterator[pb.StageEvent]:
    """The stage's events; the summary says how long the loop stood paused handing them over."""
    waited = 0.0
    # closing(): a reader that stops early must still run the stage's cleanup (hooks, frozen flags).
    with contextlib.closing(_stage_events(session, stage, cancel)) as events:
        for event in events:
            if event.WhichOneof("event") == "summary":
                event.summary.delivery_wait_seconds = waited
            handed = time.perf_counter()
            yield event  # returns once the reader has the event: at once unless the worker's buffer is full
            waited += time.perf_counter() - handed


def _stage_events(session: Session, stage: pb.StageSpec, cancel: threading.Event) -> Iterator[pb.StageEvent]:
    validate_stage(stage)
    started_at = time.perf_counter()
    gen = torch.Generator().manual_seed(stage.seed)
    kind = stage.regularizer.WhichOneof("kind")
    if session.source is not None and kind in ("feature_map", "delta", "afa_spatial", "afa_channel"):
        recalibrate_bn(session.source, _ordered_batches(session, stage.batch_size, RECALIBRATION_BATCHES))
    reg = _regularizer(session, stage, gen)
    _set_backbone_frozen(session, reg.freezes_backbone)
    optimizer = _Optimizer(stage, session, reg)
    target, source, data = session.target, session.source, session.data
    head = head_module(target)
    train = data.train
    trainable = sum(p.numel() for g in optimizer.opt.param_groups for p in g["params"])

    yield pb.StageEvent(started=pb.StageStarted(
        name=stage.name, iterations=stage.iterations, regularizer=stage.regularizer.WhichOneof("kind"),
        trainable_parameters=trainable, attention_parameters=sum(p.numel() for p in reg.parameters())))

    taps = None
    cached_maps: dict[str, torch.Tensor] | None = None
    if reg.needs_source_features and session.layers:
        if not data_augment(session) and not stage.no_feature_cache:
            cached_maps = _source_feature_cache(session, stage.batch_size, stage.feature_cache_mb or DEFAULT_FEATURE_CACHE_MB)
        taps = (FeatureTap(target, session.layers), FeatureTap(source, session.layers))
    target.train()
    if reg.freezes_backbone:
        target.eval()  # a fixed extractor keeps the source's BN statistics too
    reg.train()

    device = session.device
    window = {"ce": torch.zeros((), device=device), "reg": torch.zeros((), device=device),
              "correct": torch.zeros((), device=device, dtype=torch.long), "seen": 0, "steps": 0}
    window_start = time.perf_counter()
    best_acc, best_step, best_state = -1.0, 0, None
    last_eval: tuple[float, float] | None = None
    last_train_loss = float("nan")
    status, message, steps_done = pb.STAGE_STATUS_COMPLETED, "", 0
    check_every = max(1, min(x for x in (stage.log_every, stage.eval_every, 10) if x > 0))
    batch_iter = _batches(len(train), stage.batch_size, gen)
    images_total = 0

    def run_eval(step: int) -> Iterator[pb.StageEvent]:
        nonlocal best_acc, best_step, best_state, last_eval
        if data.val is None:
            return
        loss, acc = evaluate(session, data.val)
        last_eval = (loss, acc)
        is_best = acc > best_acc
        if is_best:
            best_acc, best_step = acc, step
            if stage.restore_best:
                best_state = copy.deepcopy(target.state_dict())
        yield pb.StageEvent(eval=pb.EvalMetrics(step=step, split="val", loss=loss, accuracy=acc, is_best=is_best))

    try:
        for step in range(stage.iterations):
            if cancel.is_set():
                status, message = pb.STAGE_STATUS_CANCELLED, f"cancelled after {step} steps"
                break
            lr = optimizer.set_factor(lr_factor(stage.lr_schedule, step, stage.iterations))
            idx = next(batch_iter).to(train.x.device)
            x = data.normalise(train.x[idx])
            y = train.y[idx]
            if data_augment(session):
                x = _augment(x, gen)
            source_maps = {}
            if cached_maps is not None:
                source_maps = {name: maps[idx] for name, maps in cached_maps.items()}
            elif taps is not None:
                with torch.no_grad(), session.precision.source_autocast():
                    source(x)
                source_maps = taps[1].take()
            with session.precision.train_autocast():
                logits = target(x)
                target_maps = taps[0].take() if taps is not None else {}
                ce = F.cross_entropy(logits.float(), y)
                reg_loss = reg.alpha * reg(target_maps, source_maps) if reg.has_term else ce.new_zeros(())
                head_term = stage.head_l2 * 0.5 * head.weight.float().pow(2).sum()
                loss = ce + reg_loss + head_term
            optimizer.opt.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.opt.step()

            window["ce"] += ce.detach()
            window["reg"] += reg_loss.detach()
            window["correct"] += (logits.detach().argmax(1) == y).sum()
            window["seen"] += len(y)
            window["steps"] += 1
            steps_done = step + 1
            images_total += len(y)

            if steps_done % check_every == 0 or steps_done == stage.iterations:
                if not math.isfinite(float(loss.detach())):
                    status = pb.STAGE_STATUS_DIVERGED
                    message = f"loss became {float(loss.detach())} at step {steps_done}; lower the lr or alpha"
                    break
            if stage.log_every and steps_done % stage.log_every == 0:
                elapsed = max(1e-9, time.perf_counter() - window_start)
                n = window["steps"]
                ce_mean, reg_mean = float(window["ce"]) / n, float(window["reg"]) / n
                last_train_loss = ce_mean + reg_mean
                yield pb.StageEvent(step=pb.StepMetrics(
                    step=steps_done, ce_loss=ce_mean, reg_loss=reg_mean, total_loss=ce_mean + reg_mean, lr=lr,
                    train_accuracy=float(window["correct"]) / max(1, window["seen"]),
                    images_per_second=window["seen"] / elapsed))
                window.update(ce=torch.zeros((), device=device), reg=torch.zeros((), device=device),
                              correct=torch.zeros((), device=device, dtype=torch.long), seen=0, steps=0)
                window_start = time.perf_counter()
            if stage.eval_every and steps_done % stage.eval_every == 0 and steps_done != stage.iterations:
                yield from run_eval(steps_done)
        if status == pb.STAGE_STATUS_COMPLETED:
            yield from run_eval(steps_done)
        if window["steps"]:
            last_train_loss = (float(window["ce"]) + float(window["reg"])) / window["steps"]
    finally:
        if taps is not None:
            for tap in taps:
                tap.close()
        _set_backbone_frozen(session, False)

    if status == pb.STAGE_STATUS_COMPLETED and stage.restore_best and best_state is not None:
        target.load_state_dict(best_state)
        last_eval = evaluate(session, data.val) if data.val is not None else last_eval

    attention = []
    for layer, weights in reg.last_attention.items():
        entropy, max_entropy = attention_entropy(weights)
        attention.append(pb.LayerAttention(layer=layer, entropy=entropy, max_entropy=max_entropy))
    wall = time.perf_counter() - started_at
    yield pb.StageEvent(summary=pb.StageSummary(
        name=stage.name, status=status, steps_completed=steps_done, best_val_accuracy=max(best_acc, 0.0),
        best_step=best_step, final_val_accuracy=last_eval[1] if last_eval else 0.0,
        final_val_loss=last_eval[0] if last_eval else 0.0, final_train_loss=last_train_loss,
        wall_seconds=wall, message=message, attention=attention,
        images_per_second=images_total / max(1e-9, wall),
        feature_cache_bytes=sum(t.numel() * t.element_size() for t in cached_maps.values()) if cached_maps else 0))


def data_augment(session: Session) -> bool:
    return bool(session.request.data.augment)
