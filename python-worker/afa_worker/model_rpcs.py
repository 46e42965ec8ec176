"""The model-out RPCs of the servicer: LoadModel (a checkpoint as an inference-only session), Predict
and ExportOnnx, on either kind of session. Kept beside servicer.py, which owns the sessions, their
compute threads and the status mapping; this module only adds what inference needs."""

from __future__ import annotations

import logging

import torch

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.errors import SpecError
from afa_worker.inference import InferenceSession, load_model, predict
from afa_worker.model_card import card_of
from afa_worker.onnx_export import export_onnx
from afa_worker.preprocess import to_inputs

__all__ = ["ModelRpcs", "card_for", "check_images"]

_log = logging.getLogger("afa_worker")
#: Random images a LoadModel session's export is checked on when none are given.
_RANDOM_CHECK_IMAGES = 16


def card_for(session, request: pb.SaveCheckpointRequest | None = None) -> pb.ModelCard:
    """A session's model card: the loaded one of an inference session, else made from the session."""
    if isinstance(session, InferenceSession):
        return session.card
    if request is None:
        return card_of(session)
    # The SDK sends NaN for a metric it did not measure.
    return card_of(session, request.spec_hash, request.best_val_accuracy, request.test_accuracy)


def memory_format_of(session) -> torch.memory_format:
    """The layout a session's model runs in (a training session's chosen layout, or a loaded model's)."""
    if isinstance(session, InferenceSession):
        return session.memory_format
    return session.layout.memory_format if session.layout else torch.channels_last


def check_images(session, images, device: torch.device) -> tuple[torch.Tensor, str]:
    """Normalised images to check an export on, and what they are."""
    card = card_for(session)
    if images:
        return to_inputs(images, card.transform, device, "check_images", memory_format_of(session)), "the images given"
    if not isinstance(session, InferenceSession):
        for name in ("test", "val", "train"):
            split = getattr(session.data, name)
            if split is not None and len(split):
                return session.data.normalise(split.x[:64]), f"the session's {name} images"
    t = card.transform
    generator = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 256, (_RANDOM_CHECK_IMAGES, 3 if t.color == "rgb" else 1, t.height, t.width), generator=generator,
                        dtype=torch.uint8)
    mean = torch.tensor(list(t.mean)).view(1, -1, 1, 1)
    std = torch.tensor(list(t.std)).view(1, -1, 1, 1)
    return ((raw.float() / 255.0 - mean) / std).to(device), "random images of the input size (give check_images to check on real ones)"


class ModelRpcs:
    """Mixed into AfaWorkerServicer, which supplies the sessions, the store and the helpers used here."""

    def LoadModel(self, request, context):  # noqa: N802
        with self._status(context):
            from afa_worker.session import resolve_device  # noqa: PLC0415

            session, compute = self._new_session(lambda: load_model(request, self._store, resolve_device))
            _log.info("session %s: model %s loaded for inference on %s", session.id[:8], session.path, session.device)
            return pb.LoadModelResponse(session_id=session.id, card=session.card, device=str(session.device),
                                        precision=session.precision.describe())

    def Predict(self, request, context):  # noqa: N802
        with self._status(context):
            session, compute = self._session(request.session_id)
            self._check_usable(session)
            card = card_for(session)
            with self._exclusive(session, "Predict"):
                return compute.call(predict, session.target, card.transform, list(card.class_names), session.device,
                                    session.precision, request.images, request.top_k, memory_format_of(session))

    def ExportOnnx(self, request, context):  # noqa: N802
        with self._status(context):
            session, compute = self._session(request.session_id)
            self._check_usable(session)
            if request.opset and request.opset > 23:
                raise SpecError("opset", f"must be at most 23, got {request.opset}")
            card = card_for(session)
            with self._exclusive(session, "ExportOnnx"):
                check, what = compute.call(check_images, session, request.check_images, session.device)
                data, difference, opset = compute.call(export_onnx, session.target, card, check, request.opset)
            digest, _path = self._store.put_bytes(data)
            return pb.ExportOnnxResponse(sha256=digest, bytes=len(data), card=card, max_abs_difference=difference,
                                         checked_images=min(len(check), 64), checked_on=what, opset=opset)
