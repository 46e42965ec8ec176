"""One stage of training on a session: the objective

    CE(f(x; W_t), y) + alpha * Omega(x) + beta * 0.5 * ||W_fc||^2

with the stage's regulariser, optimiser and lr schedule, streaming StageEvent messages. The stage
arrives parsed and validated (``StagePlan``); the pieces are the preparation (``prepare_stage``),
one training step (``train_step``), the metric window between step events (``MetricWindow``),
model selection on validation (``ModelSelection``) and the summary. Metrics are accumulated on the
device and read only at the reporting cadence; cancellation is checked every step."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.batches import augment, random_crop_flip
from afa_worker.cancel import Cancelled, cancellable
from afa_worker.compute import emit_now
from afa_worker.data import TensorSplit
from afa_worker.drift import measure_drift
from afa_worker.errors import SpecError
from afa_worker.phases import PhaseLog, recording
from afa_worker.selection import MetricWindow, ModelSelection
from afa_worker.session import Session
from afa_worker.snapshot import attention_snapshot, layer_attention
from afa_worker.stability import Stability, estimate_stability
from afa_worker.stage_plan import StagePlan
from afa_worker.stage_setup import PreparedStage, prepare_stage

__all__ = ["run_stage", "evaluate", "train_step", "StepOutput"]

EVAL_BATCH = 500


@torch.no_grad()
def evaluate(session: Session, split: TensorSplit, batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """Mean loss and accuracy of the target model on ``split``."""
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


@dataclass
class StepOutput:
    loss: torch.Tensor
    ce: torch.Tensor
    reg: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    lr: float


def _source_maps(run: PreparedStage, x: torch.Tensor, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    if run.cached_maps is not None:
        return {name: maps[idx] for name, maps in run.cached_maps.items()}
    if run.source_tap is None:
        return {}
    with torch.no_grad(), run.session.precision.source_autocast():
        run.session.source(x)
    return run.source_tap.take()


def train_step(run: PreparedStage, step: int) -> StepOutput:
    """One optimiser step on the next batch: CE + alpha * Omega + beta * 0.5 * ||W_fc||^2."""
    session, plan, train = run.session, run.plan, run.session.data.train
    lr = run.optimizer.set_factor(plan.lr_schedule.factor(step, plan.iterations))
    idx = next(run.batches).to(train.x.device)
    y = train.y[idx]
    if session.data.crop:  # the paper's RandomCrop + flip, from the resized uint8 images, on the device
        x = session.data.normalise(random_crop_flip(train.x[idx], session.data.crop, run.gen))
    else:
        x = session.data.normalise(train.x[idx])
        if session.augment:
            x = augment(x, run.gen)
    source_maps = _source_maps(run, x, idx)
    with session.precision.train_autocast():
        logits = session.target(x)
        target_maps = run.target_tap.take() if run.target_tap is not None else {}
        ce = F.cross_entropy(logits.float(), y)
        reg = run.reg.alpha * run.reg(target_maps, source_maps) if run.reg.has_term else ce.new_zeros(())
        loss = ce + reg + plan.head_l2 * 0.5 * run.head.weight.float().pow(2).sum()
    run.optimizer.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.opt.step()
    return StepOutput(loss.detach(), ce.detach(), reg.detach(), logits.detach(), y, lr)


@dataclass
class _Progress:
    status: int = pb.STAGE_STATUS_COMPLETED
    message: str = ""
    steps: int = 0
    images: int = 0


def _validate(run: PreparedStage, selection: ModelSelection, step: int) -> Iterator[pb.StageEvent]:
    if run.session.data.val is None:
        return
    loss, acc = evaluate(run.session, run.session.data.val)
    is_best = selection.observe(step, loss, acc)
    yield pb.StageEvent(eval=pb.EvalMetrics(step=step, split="val", loss=loss, accuracy=acc, is_best=is_best))


def _diverged(out: StepOutput) -> bool:
    return not math.isfinite(float(out.loss))


def _out_of_memory(exc: BaseException) -> bool:
    # CUDA raises torch.OutOfMemoryError; the CPU allocator a RuntimeError saying it cannot allocate.
    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def _fitting_step(run: PreparedStage, step: int) -> StepOutput:
    """A training step; one that does not fit the device's memory is refused naming the batch size."""
    try:
        return train_step(run, step)
    except (RuntimeError, torch.OutOfMemoryError) as exc:
        if not _out_of_memory(exc):
            raise
        run.optimizer.opt.zero_grad(set_to_none=True)
        if run.session.device.type == "cuda":
            torch.cuda.empty_cache()
        c, h, w = run.session.input_shape
        raise SpecError("stage.batch_size", f"a training step of {run.plan.batch_size} images of {c}x{h}x{w} does not fit "
                        f"in the memory of {run.session.device} (step {step}: {str(exc).splitlines()[0][:300]}); "
                        "lower the batch size, or train in bf16 (precision)") from exc


def _train(run: PreparedStage, cancel: threading.Event, window: MetricWindow, selection: ModelSelection,
           progress: _Progress) -> Iterator[pb.StageEvent]:
    plan = run.plan
    for step in range(plan.iterations):
        if cancel.is_set():
            progress.status, progress.message = pb.STAGE_STATUS_CANCELLED, f"cancelled after {step} steps"
            return
        out = _fitting_step(run, step)
        window.add(out.ce, out.reg, out.logits, out.labels)
        progress.steps, progress.images = step + 1, progress.images + len(out.labels)
        done = progress.steps
        if (done % plan.check_every == 0 or done == plan.iterations) and _diverged(out):
            progress.status = pb.STAGE_STATUS_DIVERGED
            progress.message = f"loss became {float(out.loss)} at step {done}; lower the lr or alpha"
            return
        if plan.log_every and done % plan.log_every == 0:
            metrics = window.flush(done, out.lr)
            metrics.attention.extend(layer_attention(run))
            yield pb.StageEvent(step=metrics)
        if plan.eval_every and done % plan.eval_every == 0 and done != plan.iterations:
            yield from _validate(run, selection, done)
    yield from _validate(run, selection, progress.steps)


def _summary(run: PreparedStage, progress: _Progress, window: MetricWindow, selection: ModelSelection,
             wall: float, snapshot: pb.AttentionSnapshot | None) -> pb.StageSummary:
    last = selection.last_eval
    return pb.StageSummary(
        name=run.plan.name, status=progress.status, steps_completed=progress.steps,
        best_val_accuracy=max(selection.best_accuracy, 0.0), best_step=selection.best_step,
        final_val_accuracy=last[1] if last else 0.0, final_val_loss=last[0] if last else 0.0,
        final_train_loss=window.last_loss, wall_seconds=wall, message=progress.message, attention=layer_attention(run),
        images_per_second=progress.images / max(1e-9, wall), feature_cache_bytes=run.feature_cache_bytes,
        attention_snapshot=snapshot)


def _cancelled_summary(plan: StagePlan, reason: Cancelled, wall: float, log: PhaseLog) -> pb.StageSummary:
    return pb.StageSummary(name=plan.name, status=pb.STAGE_STATUS_CANCELLED, message=f"{reason} (before the first step)",
                           final_train_loss=float("nan"), wall_seconds=wall, phases=log.timings)


def _stability(run: PreparedStage) -> Stability | None:
    """The estimate at the stage's start; a relative alpha becomes absolute here."""
    stability = estimate_stability(run) if run.plan.estimate_stability else None
    if stability is not None and run.plan.alpha_relative:
        run.reg.alpha = run.plan.alpha_relative * stability.alpha_max
    return stability


def _finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def _recover(session: Session, selection: ModelSelection, start: dict[str, torch.Tensor]) -> str:
    """After a divergence: the target's weights back to the stage's best validated step, else to the
    stage's start, so no NaN survives into the next call; when neither is finite, the session is
    marked unusable (every later call on it says so). Returns what was done, for the message."""
    if selection.restore() and _finite(session.target.state_dict()):
        return f"the target is back to its weights of step {selection.best_step} (its best validation)"
    session.target.load_state_dict(start)
    if _finite(session.target.state_dict()):
        return "the target is back to its weights from the stage's start"
    session.unusable = "its weights are not finite (they were not before this stage either)"
    return f"the session is unusable: {session.unusable}; close it"


def _train_stage(session: Session, plan: StagePlan, cancel: threading.Event, log: PhaseLog) -> Iterator[pb.StageEvent]:
    started_at = time.perf_counter()
    selection, progress = ModelSelection(session.target, plan.restore_best), _Progress()
    # Kept on the CPU for a divergence only (the model's size in host memory while the stage runs).
    start = {k: v.detach().to("cpu", copy=True) for k, v in session.target.state_dict().items()}
    try:
        with recording(log):
            run = prepare_stage(session, plan)
    except Cancelled as reason:
        yield pb.StageEvent(summary=_cancelled_summary(plan, reason, time.perf_counter() - started_at, log))
        return
    with run:
        try:
            with recording(log):
                stability = _stability(run)
        except Cancelled as reason:
            yield pb.StageEvent(summary=_cancelled_summary(plan, reason, time.perf_counter() - started_at, log))
            return
        yield pb.StageEvent(started=pb.StageStarted(
            name=plan.name, iterations=plan.iterations, regularizer=plan.regularizer.kind,
            trainable_parameters=run.trainable_parameters, attention_parameters=run.attention_parameters,
            stability=stability.message(run.reg.alpha) if stability else None))
        window = MetricWindow(session.device)
        try:
            yield from _train(run, cancel, window, selection, progress)
        except SpecError:  # a step that does not fit: the session goes on with the weights it had
            session.target.load_state_dict(start)
            raise
        snapshot = attention_snapshot(run) if progress.status != pb.STAGE_STATUS_CANCELLED else None
    if progress.status == pb.STAGE_STATUS_COMPLETED and selection.restore() and session.data.val is not None:
        selection.last_eval = evaluate(session, session.data.val)
    if progress.status == pb.STAGE_STATUS_DIVERGED:
        progress.message += f"; {_recover(session, selection, start)}"
    drift = measure_drift(session) if plan.measure_drift and progress.status == pb.STAGE_STATUS_COMPLETED else None
    summary = _summary(run, progress, window, selection, time.perf_counter() - started_at, snapshot)
    summary.phases.extend(log.timings)
    if stability:
        summary.stability.CopyFrom(stability.message(run.reg.alpha))
    if drift is not None:
        summary.drift.CopyFrom(drift)
    yield pb.StageEvent(summary=summary)


def run_stage(session: Session, plan: StagePlan, cancel: threading.Event) -> Iterator[pb.StageEvent]:
    """The stage's events; the summary says how long the loop stood paused handing them over.

    The phases before the first step report progress from deep in their loops: on a worker's
    stream (``compute.emit_now``) it reaches the client as it happens; called directly, it comes
    out before the next event."""
    waited, pending = 0.0, []

    def progress(p: pb.Progress) -> None:
        event = pb.StageEvent(progress=p)
        if not emit_now(event):
            pending.append(event)

    # closing(): a reader that stops early must still run the stage's cleanup (hooks, frozen flags).
    with cancellable(cancel), contextlib.closing(_train_stage(session, plan, cancel, PhaseLog(progress))) as events:
        for event in events:
            while pending:
                yield pending.pop(0)
            if event.WhichOneof("event") == "summary":
                event.summary.delivery_wait_seconds = waited
            handed = time.perf_counter()
            yield event  # returns once the reader has the event: at once unless the worker's buffer is full
            waited += time.perf_counter() - handed

