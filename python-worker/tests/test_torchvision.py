"""torchvision and timm, where they import (``make test-torchvision`` builds a venv with the mirror's
CUDA torch 2.14.1, which runs on the CPU; against this machine's CPU torch 2.13 torchvision does not
import, so the main suite skips this file): the worker's own ResNet-18/34/50/101 and MobileNetV2
load torchvision's state dicts strictly and compute the same logits; ``torchvision:NAME`` and
``timm:NAME`` backbones train through the worker (head found, layers listed, alignment and
DELTA's split probe work)."""

from __future__ import annotations

import threading

import pytest
import torch

tvm = pytest.importorskip("torchvision.models", reason="torchvision does not import here (make test-torchvision)")
timm = pytest.importorskip("timm", reason="timm does not import here (make test-torchvision)")

from afa_worker._gen.afa.v1 import afa_pb2 as pb  # noqa: E402
from afa_worker.backbones import build_backbone  # noqa: E402
from afa_worker.checkpoint import save_checkpoint  # noqa: E402
from afa_worker.session import create_session  # noqa: E402
from afa_worker.stage_plan import parse_stage  # noqa: E402
from afa_worker.trainer import run_stage  # noqa: E402

OURS = {"resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50", "resnet101": "resnet101",
        "mobilenet_v2": "mobilenet_v2"}


@pytest.mark.parametrize("ours, theirs", OURS.items())
def test_the_worker_backbone_loads_torchvision_weights_strictly_and_gives_the_same_logits(ours, theirs):
    torch.manual_seed(0)
    reference = tvm.get_model(theirs, weights=None, num_classes=1000).eval()
    model = build_backbone(ours, 1000, 3).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (model(x) - reference(x)).abs().max().item()
    assert diff == 0.0, f"max |logit difference| {diff}"


def _folder(root) -> str:
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("test", 2)):
        for c, name in enumerate(("a", "b", "c")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = (torch.rand(40, 40, 3, generator=gen) * 80 + 60 * c).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return str(root)


@pytest.mark.parametrize("name", ["torchvision:resnet18", "timm:resnet18"])
def test_an_external_backbone_trains_through_the_worker_with_alignment(name, tmp_path):
    source = build_external_source(name)
    path, *_ = save_checkpoint(source, str(tmp_path / "source"), {})
    session = create_session(pb.CreateSessionRequest(
        backbone=pb.BackboneSpec(name=name), source_weights=path, layers=["layer2", "layer4"],
        data=pb.DataSpec(image_folder=pb.ImageFolderData(root=_folder(tmp_path / "data")), image_size=32,
                         color=pb.COLOR_MODE_RGB, val_per_class=1, seed=0), seed=0))
    assert session.head_name == "fc" and session.layers == ["layer2", "layer4"]
    assert session.layer_shapes["layer2"][0] == 128 and session.layer_shapes["layer4"][0] == 512
    for reg in (pb.Regularizer(afa_spatial=pb.AfaSpatial(alpha=1e-3)),
                pb.Regularizer(delta=pb.Delta(alpha=1e-3, head_iterations=2, ablation_batches=1))):
        stage = pb.StageSpec(name=reg.WhichOneof("kind"), regularizer=reg, iterations=2, batch_size=4, log_every=1, seed=0,
                             optimizer=pb.OptimizerSpec(lr=1e-3, momentum=0.9), no_stability_estimate=True)
        events = list(run_stage(session, parse_stage(stage), threading.Event()))
        summary = events[-1].summary
        assert summary.status == pb.STAGE_STATUS_COMPLETED and summary.steps_completed == 2, summary.message
        steps = [e.step for e in events if e.WhichOneof("event") == "step"]
        assert all(s.reg_loss > 0 for s in steps), "the alignment term is live on both layers"
        if reg.WhichOneof("kind") == "delta":
            probe = [p for p in summary.phases if p.phase == "delta_probe"][0]
            assert "re-run" in probe.detail, probe.detail  # the external model splits too


def build_external_source(name: str) -> torch.nn.Module:
    """The source in the layout the worker builds ``name`` in (10 classes: the head is replaced anyway)."""
    torch.manual_seed(0)
    return build_backbone(name, 10, 3)
