"""GPU throughput of the worker's training step (fine-tune, AFA spatial, AFA channel) on
ResNet-50/101 at 224x224, batch 64, fp32 and bf16, against a tuned plain PyTorch fine-tuning loop
(channels_last, bf16 autocast, cudnn.benchmark, fused SGD) in the same run. Synthetic inputs: this
measures the chip, not a data pipeline. Exits with a message where CUDA is absent; ``--smoke`` runs
every code path on the CPU at toy sizes (the test suite does, so the script cannot rot unseen)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python-worker"))

from afa_worker._gen.afa.v1 import afa_pb2 as pb  # noqa: E402
from afa_worker.backbones import build_backbone, default_layers  # noqa: E402
from afa_worker.precision import resolve_precision  # noqa: E402
from afa_worker.data import DataBundle, TensorSplit  # noqa: E402
from afa_worker.session import Provenance, Session, _freeze, _layer_shapes  # noqa: E402
from afa_worker.stage_plan import parse_stage  # noqa: E402
from afa_worker.trainer import run_stage  # noqa: E402

# Forward FLOPs per 224x224 image (multiply-adds x 2), from the architectures' published counts.
GFLOPS_FWD = {"resnet50": 2 * 4.09, "resnet101": 2 * 7.80, "resnet18": 2 * 1.82}


def synthetic_session(arch: str, n: int, bf16: bool, device: torch.device, size: int) -> Session:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # the backbones' init: a run-to-run difference here made the smoke test flaky
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 100, (n,), generator=gen)
    data = DataBundle(TensorSplit(x, y), TensorSplit(x[:64], y[:64]), None, 100, [str(i) for i in range(100)],
                      torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    model = build_backbone(arch, num_classes=100)
    source = build_backbone(arch, num_classes=100)
    source.load_state_dict(model.state_dict())
    _freeze(source)
    layers = default_layers(arch)
    shapes = _layer_shapes(model, layers, data.normalise(x[:2]))
    model = model.to(device, memory_format=torch.channels_last)
    source = source.to(device, memory_format=torch.channels_last)
    choice = pb.PRECISION_BF16 if bf16 else pb.PRECISION_FP32
    provenance = Provenance(arch, 0, 0, "", None)
    return Session("bench", provenance, False, device, data.to(device), model, source, layers, shapes,
                   resolve_precision(choice, device))


def worker_images_per_second(session: Session, reg: pb.Regularizer, steps: int, cache: bool, batch: int = 64,
                             log_every: int = 5) -> tuple[float, str]:
    """Images/s of the worker's own loop between step events (every 5 steps, as a run logs), after
    two warm-up windows: stage setup (BN recalibration, the feature cache) and the final evaluation
    are not training throughput. Reading the logged metrics synchronises the device."""
    windows = max(1, steps // log_every)
    stage = pb.StageSpec(name="gpu", regularizer=reg, iterations=(windows + 2) * log_every, batch_size=batch, head_l2=0.01,
                         seed=0, log_every=log_every, optimizer=pb.OptimizerSpec(lr=1e-4, momentum=0.9),
                         no_feature_cache=not cache)
    stamps, summary = [], None
    for event in run_stage(session, parse_stage(stage), threading.Event()):
        if event.WhichOneof("event") == "step":
            stamps.append(time.perf_counter())
        elif event.WhichOneof("event") == "summary":
            summary = event.summary
    if summary is None:
        raise RuntimeError("the benchmark stage ended without a summary")
    status = pb.StageStatus.Name(summary.status)
    if summary.status != pb.STAGE_STATUS_COMPLETED or len(stamps) < 3:
        # Random images and labels at a tiny lr should not diverge; if they do, the row says so and
        # falls back to the whole stage's rate (setup included) rather than losing the row.
        return summary.images_per_second, status
    return batch * log_every * windows / (stamps[-1] - stamps[1]), status


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop_images_per_second(arch: str, steps: int, bf16: bool, device: torch.device, size: int, batch: int = 64) -> float:
    model = build_backbone(arch, num_classes=100).to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=device.type == "cuda")
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (batch,), device=device)
    torch.backends.cudnn.benchmark = True

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(min(5, steps)):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the chip (H200 SXM: 989)")
    parser.add_argument("--json", default="")
    parser.add_argument("--smoke", action="store_true", help="CPU, resnet18 at 16x16, a few steps: checks the code paths")
    args = parser.parse_args()
    if args.smoke:
        device, archs, size, n, args.steps = torch.device("cpu"), ("resnet18",), 16, 64, 5
        # One thread: the suite runs this beside other work on two cores, where OpenMP threads
        # spin-waiting on each other made it 10x slower than alone.
        torch.set_num_threads(1)
    elif torch.cuda.is_available():
        device, archs, size, n = torch.device("cuda"), ("resnet50", "resnet101"), 224, 512
    else:
        print("gpu_bench: no CUDA device here; run this on a machine with a GPU", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    methods = {
        "fine-tune": (pb.Regularizer(none=pb.NoRegularizer(weight_decay=1e-4)), False),
        # Small alphas: the paper's (0.1/0.15) diverge on random images within a few steps, and a
        # diverged stage stops early; the step's cost does not depend on alpha.
        "afa-spatial": (pb.Regularizer(afa_spatial=pb.AfaSpatial(alpha=1e-4)), False),
        "afa-channel": (pb.Regularizer(afa_channel=pb.AfaChannel(alpha=1e-4)), False),
        "afa-channel+cache": (pb.Regularizer(afa_channel=pb.AfaChannel(alpha=1e-4)), True),
    }
    rows = []
    for arch in archs:
        for bf16 in (False, True):
            plain = plain_loop_images_per_second(arch, args.steps, bf16, device, size)
            row = {"arch": arch, "precision": "bf16" if bf16 else "fp32", "plain_loop_images_per_s": plain}
            for name, (reg, cache) in methods.items():
                session = synthetic_session(arch, n, bf16, device, size)
                ips, status = worker_images_per_second(session, reg, args.steps, cache)
                flops = ips * GFLOPS_FWD[arch] * (size / 224) ** 2 * 3 * 1e9  # forward + backward ~ 3x forward
                row[name] = {"images_per_s": ips, "stage": status, "vs_plain_loop": ips / plain,
                             "fraction_of_bf16_peak": flops / (args.peak_tflops * 1e12)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (smoke)"
    result = {"device": name, "torch": torch.__version__, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
