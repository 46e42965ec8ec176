"""The paper's configuration on this machine: ResNet-50 (and -101) at 224x224, bf16, synthetic images.

    python bench/python/paper_scale.py [--batch 8] [--steps 5] [--json out.json] [--smoke]

Prints, from one run:
  * the worker's fine-tuning step against the same model, data and precision in a plain PyTorch
    loop (channels_last, bf16 autocast, SGD with momentum): images/s and their ratio;
  * AFA's spatial (AST) and channel (ACT) steps against the worker's fine-tuning step;
  * the time from the stage's call to its first step, phase by phase, for fine-tuning, DELTA and
    AFA on ResNet-50 and ResNet-101 (the summary's phases; alphas relative, so the stability
    estimate runs and its budget shows);
  * how long a cancel takes to stop the stability estimate (mid Hessian-vector product) and DELTA's
    probe (mid ablation), with the checks inside a pass (``cancel.interruptible``) and without;
  * DELTA's probe per channel: the whole network per ablation (the reference's way) against the
    network after the layer re-run for a group of channels, measured on the first channels of
    each paper layer and projected to all 3,840 (the whole-network probe at 224 px is hours here).

Synthetic inputs (uint8 noise, 100 classes) and random weights: this measures the computation, not
a data pipeline or what is learnt. ``--smoke`` runs every path at toy sizes (resnet18/50 at 32 px)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python-worker"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from afa_worker import regularizers, stability  # noqa: E402
from afa_worker._gen.afa.v1 import afa_pb2 as pb  # noqa: E402
from afa_worker.compute import ComputeThread  # noqa: E402
from afa_worker.regularizers.ablation import SplitNetwork, suffix_rises  # noqa: E402
from afa_worker.stage_plan import parse_stage  # noqa: E402
from afa_worker.trainer import run_stage  # noqa: E402
from gpu_bench import plain_loop_images_per_second, synthetic_session, worker_images_per_second  # noqa: E402

METHODS = {
    "fine-tune": pb.Regularizer(none=pb.NoRegularizer(weight_decay=1e-4)),
    "afa-spatial": pb.Regularizer(afa_spatial=pb.AfaSpatial(alpha=1e-4)),
    "afa-channel": pb.Regularizer(afa_channel=pb.AfaChannel(alpha=1e-4)),
}


def step_ratios(arch: str, size: int, batch: int, steps: int) -> dict:
    device = torch.device("cpu")
    plain = plain_loop_images_per_second(arch, steps, True, device, size, batch)
    row: dict = {"arch": arch, "size": size, "batch": batch, "precision": "bf16", "plain_loop_images_per_s": plain}
    for name, reg in METHODS.items():
        session = synthetic_session(arch, 4 * batch, True, device, size)
        ips, status = worker_images_per_second(session, reg, steps, cache=False, batch=batch, log_every=1)
        row[name] = {"images_per_s": ips, "stage": status}
    row["worker_vs_plain_loop"] = row["fine-tune"]["images_per_s"] / plain
    for name in ("afa-spatial", "afa-channel"):
        row[f"{name}_step_vs_fine_tune"] = row["fine-tune"]["images_per_s"] / row[name]["images_per_s"]
    return row


def first_step(arch: str, size: int, batch: int, method: str) -> dict:
    """Seconds from the stage's call to its first step event, and the summary's phases."""
    regs = {
        "fine-tune": (pb.Regularizer(none=pb.NoRegularizer()), 0.0),
        # DELTA's probe at its defaults would ablate 3,840 channels at 224 px: one head step and one
        # batch here; its per-channel cost is measured apart (probe_cost)
        "delta": (pb.Regularizer(delta=pb.Delta(head_iterations=1, ablation_batches=1)), 0.01),
        "afa-spatial": (pb.Regularizer(afa_spatial=pb.AfaSpatial()), 0.01),
    }
    reg, relative = regs[method]
    session = synthetic_session(arch, 4 * batch, True, torch.device("cpu"), size)
    stage = pb.StageSpec(name=method, regularizer=reg, iterations=2, batch_size=batch, log_every=1, seed=0,
                         optimizer=pb.OptimizerSpec(lr=1e-3, momentum=0.9), alpha_relative=relative,
                         no_stability_estimate=relative == 0)
    started, first, summary = time.perf_counter(), None, None
    for event in run_stage(session, parse_stage(stage), threading.Event()):
        kind = event.WhichOneof("event")
        if kind == "step" and first is None:
            first = time.perf_counter() - started
        elif kind == "summary":
            summary = event.summary
    return {"arch": arch, "method": method, "to_first_step_s": first,
            "phases": {p.phase: {"seconds": p.seconds, "detail": p.detail} for p in summary.phases}}


CANCELLED_PHASES = {
    # phase -> the stage that runs it (a relative alpha makes the stability estimate run), and when
    # the cancel comes: 25 s into the estimate is inside its first Hessian-vector product at 224 px
    # here (the first gradient takes ~10 s, a product ~20 s), 5 s into the probe inside its ablations
    "stability_estimate": (pb.Regularizer(afa_spatial=pb.AfaSpatial()), 0.01, 25.0),
    "delta_probe": (pb.Regularizer(delta=pb.Delta(head_iterations=1, ablation_batches=1)), 0.0, 5.0),
}


def cancel_latency(arch: str, size: int, batch: int, phase_name: str, inside_a_pass: bool, delay: float) -> dict:
    """Seconds from setting the stage's cancel event, ``delay`` into the phase, to the stage's
    cancelled summary; ``inside_a_pass=False`` takes the checks between passes only (as before)."""
    reg, relative, _ = CANCELLED_PHASES[phase_name]
    session = synthetic_session(arch, 4 * batch, True, torch.device("cpu"), size)
    stage = pb.StageSpec(name=phase_name, regularizer=reg, iterations=2, batch_size=batch, log_every=1, seed=0,
                         optimizer=pb.OptimizerSpec(lr=1e-3, momentum=0.9), alpha_relative=relative,
                         no_stability_estimate=relative == 0)
    cancel, thread = threading.Event(), ComputeThread("bench-cancel")
    patched = contextlib.ExitStack()
    if not inside_a_pass:
        for module in (stability, regularizers.delta):
            patched.enter_context(_replaced(module, "interruptible", lambda *_a: contextlib.nullcontext()))
    set_at, summary = None, None
    with patched:
        for event in thread.stream(lambda: run_stage(session, parse_stage(stage), cancel), cancel.set):
            kind = event.WhichOneof("event")
            if kind == "progress" and event.progress.phase == phase_name and set_at is None:
                threading.Timer(delay, cancel.set).start()
                set_at = time.perf_counter() + delay
            elif kind == "summary":
                summary = event.summary
    thread.close()
    thread._thread.join()  # a daemon thread still inside torch at interpreter exit aborts it
    return {"arch": arch, "phase": phase_name, "inside_a_pass": inside_a_pass, "cancel_after_s": delay,
            "stopped_after_cancel_s": time.perf_counter() - set_at, "message": summary.message}


@contextlib.contextmanager
def _replaced(module, name: str, value):
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


def probe_cost(arch: str, size: int, batch: int, sample: int) -> dict:
    """Per-channel seconds of DELTA's ablation, whole network vs the split network's suffix, on the
    first ``sample`` channels of each paper layer; projected to every channel of every layer."""
    session = synthetic_session(arch, batch, False, torch.device("cpu"), size)
    model = session.source.float().eval()
    x = session.data.normalise(session.data.train.x[:batch]).float()
    y = session.data.train.y[:batch]
    batches = [(x, y)]
    with torch.no_grad():
        base = F.cross_entropy(model(x), y)
    layers, out = [], {"arch": arch, "size": size, "batch": batch, "sample_channels": sample}
    whole_total = split_total = 0.0
    for name, (channels, _h, _w) in session.layer_shapes.items():
        module = model.get_submodule(name)
        j = {"c": 0}
        handle = module.register_forward_hook(lambda _m, _i, o: o.index_fill(1, torch.tensor([j["c"]]), 0.0))
        start = time.perf_counter()
        with torch.no_grad():
            for c in range(sample):
                j["c"] = c
                F.cross_entropy(model(x), y)
        whole = (time.perf_counter() - start) / sample
        handle.remove()
        split = SplitNetwork(model, name)
        start = time.perf_counter()
        suffix_rises(split, batches, base, lambda n: None, lambda c: None, channels=sample)
        part = (time.perf_counter() - start) / sample
        layers.append({"layer": name, "channels": channels, "whole_network_s_per_channel": whole, "suffix_s_per_channel": part,
                       "speedup": whole / part})
        whole_total += whole * channels
        split_total += part * channels
    out.update(layers=layers, projected_whole_network_s=whole_total, projected_suffix_s=split_total,
               projected_speedup=whole_total / split_total)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--sample", type=int, default=8, help="channels per layer timed in the probe comparison")
    parser.add_argument("--json", default="")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--parts", default="steps,first_step,cancel,probe", help="which measures, comma-separated")
    args = parser.parse_args()
    size, archs = (32, ("resnet50",)) if args.smoke else (224, ("resnet50", "resnet101"))
    if args.smoke:
        args.batch, args.steps, args.sample = 2, 2, 2
    parts = set(args.parts.split(","))
    result: dict = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if "steps" in parts:
        result["steps"] = step_ratios("resnet50", size, args.batch, args.steps)
        print(json.dumps(result["steps"]), flush=True)
    if "first_step" in parts:
        result["first_step"] = []
        for arch in archs:
            for method in ("fine-tune", "delta", "afa-spatial"):
                row = first_step(arch, size, max(2, args.batch // 2), method)
                result["first_step"].append(row)
                print(json.dumps(row), flush=True)
    if "cancel" in parts:
        result["cancel"] = []
        for phase_name, (_reg, _relative, delay) in CANCELLED_PHASES.items():
            for inside in (True, False):
                row = cancel_latency("resnet50", size, max(2, args.batch // 2), phase_name, inside, 0.2 if args.smoke else delay)
                result["cancel"].append(row)
                print(json.dumps(row), flush=True)
    if "probe" in parts:
        result["probe"] = []
        for arch in archs:
            result["probe"].append(probe_cost(arch, size, args.batch, args.sample))
            print(json.dumps(result["probe"][-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
