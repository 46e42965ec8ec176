"""Prediction with a session's target model, and inference-only sessions made from a checkpoint
(LoadModel): the model and its card, no data, no source. Both apply the card's eval transform
(preprocess.py) and answer logits, probabilities and the top classes with their names."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.backbones import build_backbone
from afa_worker.errors import SpecError
from afa_worker.model_card import read_card
from afa_worker.layout import ModelRecipe, choose_layout
from afa_worker.paths import check_path_text
from afa_worker.precision import PrecisionPlan, resolve_precision
from afa_worker.preprocess import to_inputs
from afa_worker.weight_store import WeightStore
from afa_worker.weights import read_state_dict

__all__ = ["InferenceSession", "load_model", "predict", "PREDICT_BATCH", "DEFAULT_TOP_K"]

#: Images per forward pass (the worker's Evaluate batch: the same batches give the same numbers).
PREDICT_BATCH = 500
DEFAULT_TOP_K = 5


@dataclass
class InferenceSession:
    """A checkpoint loaded to predict: LoadModel's session. It has no data and no source."""

    id: str
    target: nn.Module
    card: pb.ModelCard
    device: torch.device
    precision: PrecisionPlan
    path: str
    #: Chosen as for training (afa_worker.layout): the numbers equal the live session's.
    memory_format: torch.memory_format = torch.channels_last
    lock: threading.Lock = field(default_factory=threading.Lock)
    running_stage: str | None = None
    stage_cancel: threading.Event | None = None


def load_model(request: pb.LoadModelRequest, store: WeightStore, resolve_device) -> InferenceSession:
    which = request.WhichOneof("model")
    if which is None:
        raise SpecError("model", "give the checkpoint's path or its sha256 in the weight store", ["path", "sha256"])
    path = store.require(request.sha256, "sha256") if which == "sha256" else Path(check_path_text(request.path, "path"))
    if which == "path" and not path.is_file():
        raise SpecError("path", f"checkpoint {request.path} does not exist on this worker's machine (a worker elsewhere gets it "
                                "by hash: PutWeights, then LoadModel by sha256)")
    card = read_card(path, which)
    device = resolve_device(request.device)
    b = card.backbone
    try:
        model = build_backbone(b.name, len(card.class_names), b.in_channels, b.width, b.depth)
    except SpecError as exc:
        raise SpecError(which, f"the model card's backbone cannot be built here: {exc}") from exc
    state = read_state_dict(str(path))
    missing = [k for k in model.state_dict() if k not in state]
    wrong = [k for k, v in model.state_dict().items() if k in state and state[k].shape != v.shape]
    if missing or wrong:
        raise SpecError(which, f"{path} does not fit its own model card ({b.name}, {len(card.class_names)} classes): "
                               f"{len(missing)} tensors missing, {len(wrong)} of another shape (e.g. {(missing + wrong)[0]})")
    model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()})
    precision = resolve_precision(request.precision, device)
    t = card.transform
    recipe = ModelRecipe(b.name, len(card.class_names), b.in_channels, b.width, b.depth)
    layout = choose_layout(model, recipe, (3 if t.color == "rgb" else 1, t.height, t.width), device, precision.train == torch.bfloat16)
    model = model.to(device, memory_format=layout.memory_format).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return InferenceSession(uuid.uuid4().hex, model, card, device, precision, str(path), memory_format=layout.memory_format)


@torch.no_grad()
def predict(model: nn.Module, transform: pb.ImageTransform, class_names: list[str], device: torch.device,
            precision: PrecisionPlan, images, top_k: int, memory_format: torch.memory_format = torch.channels_last) -> pb.PredictResponse:
    """Logits, probabilities and the top-k classes per image, the model in eval mode (inputs in its ``memory_format``)."""
    k = min(top_k or DEFAULT_TOP_K, len(class_names))
    x = to_inputs(images, transform, device, memory_format=memory_format)
    was_training = model.training
    model.eval()
    try:
        logits = []
        for start in range(0, len(x), PREDICT_BATCH):
            with precision.train_autocast():
                logits.append(model(x[start:start + PREDICT_BATCH]).float())
    finally:
        model.train(was_training)
    out = pb.PredictResponse(class_names=class_names)
    if not logits:
        return out
    all_logits = torch.cat(logits).cpu()
    probabilities = torch.softmax(all_logits, dim=1)
    values, labels = probabilities.topk(k, dim=1)
    for row, p, v, lab in zip(all_logits.tolist(), probabilities.tolist(), values.tolist(), labels.tolist()):
        out.predictions.add(logits=row, probabilities=p,
                            top=[pb.TopClass(label=c, name=class_names[c], probability=q) for c, q in zip(lab, v)])
    return out
