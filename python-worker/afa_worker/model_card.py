"""The model card: what inference needs, travelling with the weights (proto ModelCard). It is written
into a checkpoint's JSON sidecar and into the safetensors file's own metadata (so the weights file
alone carries it, e.g. from the weight store), and into an exported ONNX model's metadata_props.
A checkpoint without one (saved before this version) is refused with what is missing."""

from __future__ import annotations

import json
import math
from pathlib import Path

from google.protobuf import json_format
from safetensors import safe_open

from afa_worker import __version__
from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.errors import SpecError

__all__ = ["CARD_FORMAT", "METADATA_KEY", "card_of", "card_json", "parse_card", "read_card", "check_card"]

CARD_FORMAT = "afa-model-card/1"
#: The key of the card in a safetensors file's metadata, an ONNX model's metadata_props and a sidecar.
METADATA_KEY = "afa_model_card"
#: What a card must say to predict with it, in the words an error uses.
_REQUIRED = {"class_names": "class names", "backbone": "backbone", "transform": "eval transform (input size, colour, "
             "mean/std)"}


def card_of(session, spec_hash: str = "", best_val: float = math.nan, test: float = math.nan) -> pb.ModelCard:
    """The card of a session's target model: its data's classes and transform, its backbone, provenance and metrics."""
    origin = session.provenance
    return pb.ModelCard(
        format=CARD_FORMAT, class_names=session.data.class_names,
        backbone=pb.BackboneSpec(name=origin.backbone, in_channels=session.data.in_channels, width=origin.width, depth=origin.depth),
        transform=session.data.transform, spec_hash=spec_hash, source_sha256=session.source_sha256,
        best_val_accuracy=best_val, test_accuracy=test, package_version=__version__)


def card_json(card: pb.ModelCard) -> str:
    """The card as proto3 JSON (camelCase names), as the SDK reads it."""
    return json_format.MessageToJson(card, indent=None)


def check_card(card: pb.ModelCard, where: str, field: str = "path") -> pb.ModelCard:
    missing = [words for key, words in _REQUIRED.items() if not (card.HasField(key) if key != "class_names" else card.class_names)]
    if card.HasField("transform") and not (card.transform.height and card.transform.width and card.transform.mean):
        missing.append("input size and mean/std")
    if missing:
        raise SpecError(field, f"{where}'s model card lacks {', '.join(missing)}")
    return card


def parse_card(text: str, where: str, field: str = "path") -> pb.ModelCard:
    card = pb.ModelCard()
    try:
        json_format.Parse(text, card, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError) as exc:
        raise SpecError(field, f"{where}'s model card is not readable: {str(exc).splitlines()[0]}") from exc
    return check_card(card, where, field)


def read_card(weights: Path, field: str = "path") -> pb.ModelCard:
    """The card of a checkpoint: from its safetensors metadata, else its sidecar; a SpecError naming
    what is missing for a checkpoint saved without one."""
    try:
        with safe_open(str(weights), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - anything unreadable is not a checkpoint
        raise SpecError(field, f"{weights} is not a readable safetensors checkpoint: {exc}") from exc
    if METADATA_KEY in metadata:
        return parse_card(metadata[METADATA_KEY], str(weights), field)
    sidecar = weights.with_suffix(".json")
    if sidecar.is_file():
        try:
            body = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SpecError(field, f"{sidecar} is not readable JSON: {exc}") from exc
        if isinstance(body, dict) and isinstance(body.get("model_card"), dict):
            return parse_card(json.dumps(body["model_card"]), str(weights), field)
    saved_by = metadata.get("afa_worker")
    raise SpecError(field, f"{weights} has no model card ({f'saved by afa-worker {saved_by}' if saved_by else 'not saved by afa-worker'}"
                           f", before checkpoints carried one): it lacks the class names, the input size and colour, the mean/std "
                           "and the eval transform; save the model again from a session (SaveCheckpoint) to predict with it")
