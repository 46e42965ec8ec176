"""The model out, on real data through a real worker: a checkpoint carries its model card, Predict
on a live session gives exactly Evaluate's predictions, a loaded checkpoint gives the same numbers,
ImageFolder RGB images of mixed sizes go through the training data's own transform, the ONNX export
reproduces PyTorch's logits, and bad inputs are refused naming the image while the worker serves on."""

from __future__ import annotations

import io
import json
import math
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.checkpoint import save_checkpoint
from afa_worker.session import create_session
from afa_worker.stage_plan import parse_stage
from afa_worker.trainer import run_stage


def _train(stub, data: pb.DataSpec, width: int = 4, steps: int = 6) -> str:
    session = stub.CreateSession(pb.CreateSessionRequest(backbone=pb.BackboneSpec(name="small_resnet", width=width), data=data,
                                                         seed=0, no_source=True))
    stage = pb.StageSpec(name="s", regularizer=pb.Regularizer(none=pb.NoRegularizer(weight_decay=1e-4)), iterations=steps,
                         batch_size=32, optimizer=pb.OptimizerSpec(kind=pb.OPTIMIZER_KIND_SGD, lr=0.05, momentum=0.9), seed=0)
    for _ in stub.RunStage(pb.RunStageRequest(session_id=session.session_id, stage=stage)):
        pass
    return session.session_id


def _raw(x: torch.Tensor) -> pb.InputImage:
    c, h, w = x.shape
    return pb.InputImage(raw=pb.RawImage(pixels=x.permute(1, 2, 0).contiguous().numpy().tobytes(), height=h, width=w, channels=c))


def _servicer_session(server, session_id):
    return server.servicer._sessions[session_id]


def _accuracy(response: pb.PredictResponse, labels: torch.Tensor) -> float:
    top1 = [p.top[0].label for p in response.predictions]
    return sum(int(a == b) for a, b in zip(top1, labels.tolist())) / len(top1)  # in double, as Evaluate counts


def _predict_all(stub, session_id: str, images: list[pb.InputImage], batch: int = 500) -> pb.PredictResponse:
    out = pb.PredictResponse()
    for start in range(0, len(images), batch):  # Evaluate's batches: the same batches give the same numbers
        out.predictions.extend(stub.Predict(pb.PredictRequest(session_id=session_id, images=images[start:start + batch], top_k=3)).predictions)
    return out


def test_predict_on_a_live_session_is_evaluate_and_a_loaded_checkpoint_gives_the_same_numbers(stub, server, tmp_path):
    sid = _train(stub, pb.DataSpec(mnist=pb.MnistData(), labels_per_class=20, val_per_class=5, seed=0))
    test = _servicer_session(server, sid).data.test
    images = [_raw(x) for x in test.x.cpu()]
    live = _predict_all(stub, sid, images)
    evaluated = stub.Evaluate(pb.EvaluateRequest(session_id=sid, split=pb.SPLIT_TEST))
    assert _accuracy(live, test.y.cpu()) == evaluated.accuracy  # the same transform, the same model, the same batches
    first = live.predictions[0]
    assert len(first.logits) == 10 and abs(sum(first.probabilities) - 1) < 1e-5
    assert [t.name for t in first.top] == [str(t.label) for t in first.top] and len(first.top) == 3
    assert first.top[0].probability == max(first.probabilities)

    saved = stub.SaveCheckpoint(pb.SaveCheckpointRequest(session_id=sid, path=str(tmp_path / "m.safetensors"), spec_hash="abc",
                                                         best_val_accuracy=0.5, test_accuracy=evaluated.accuracy))
    assert list(saved.card.class_names) == [str(d) for d in range(10)] and saved.card.transform.mean[0] == pytest.approx(0.1307)
    with safe_open(saved.path, framework="pt") as fh:  # the weights file alone carries the card
        assert json.loads(fh.metadata()["afa_model_card"])["specHash"] == "abc"
    assert json.loads(Path(saved.metadata_path).read_text())["model_card"]["transform"]["resample"] == "torch_bilinear"
    loaded = stub.LoadModel(pb.LoadModelRequest(path=saved.path))
    assert loaded.card.test_accuracy == evaluated.accuracy and loaded.card.backbone.width == 4
    again = _predict_all(stub, loaded.session_id, images)
    assert [list(p.logits) for p in again.predictions] == [list(p.logits) for p in live.predictions]
    with pytest.raises(grpc.RpcError) as err:  # an inference session predicts, nothing else
        stub.Evaluate(pb.EvaluateRequest(session_id=loaded.session_id, split=pb.SPLIT_TEST))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "was made by LoadModel to predict" in err.value.details()


def _folder(root: Path) -> None:
    """RGB images of mixed sizes and aspect ratios, as PNG and JPEG: two classes told apart by colour."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 8)):
        for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                w, h = int(rng.integers(12, 40)), int(rng.integers(12, 40))
                pixels = np.clip(np.array(colour) + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / label / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_imagefolder_images_of_mixed_sizes_go_through_the_training_transform(stub, server, tmp_path):
    _folder(tmp_path)
    sid = _train(stub, pb.DataSpec(image_folder=pb.ImageFolderData(root=str(tmp_path)), image_size=16, color=pb.COLOR_MODE_RGB), steps=4)
    files = sorted((tmp_path / "test").rglob("*.*"))
    encoded = [pb.InputImage(encoded=f.read_bytes()) for f in files]
    labels = torch.tensor([0 if f.parent.name == "blue" else 1 for f in files])  # classes sorted: blue, red
    response = _predict_all(stub, sid, encoded)
    evaluated = stub.Evaluate(pb.EvaluateRequest(session_id=sid, split=pb.SPLIT_TEST))
    assert _accuracy(response, labels) == evaluated.accuracy
    # The files, decoded and resized at predict time, are exactly the images the session decoded at its start.
    decoded = _predict_all(stub, sid, [_raw(x) for x in _servicer_session(server, sid).data.test.x.cpu()])
    assert [list(p.logits) for p in response.predictions] == [list(p.logits) for p in decoded.predictions]
    assert [p.top[0].name for p in response.predictions][:1][0] in ("blue", "red")
    card = stub.SaveCheckpoint(pb.SaveCheckpointRequest(session_id=sid, to_weight_store=True, test_accuracy=math.nan)).card
    assert (card.transform.color, card.transform.height, card.transform.resample) == ("rgb", 16, "pil_bilinear")
    assert math.isnan(card.test_accuracy)


def test_the_onnx_export_reproduces_pytorch_and_carries_the_card(stub, server, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    sid = _train(stub, pb.DataSpec(mnist=pb.MnistData(), labels_per_class=10, seed=0))
    exported = stub.ExportOnnx(pb.ExportOnnxRequest(session_id=sid))
    assert exported.max_abs_difference <= 1e-4 and exported.checked_images == 64 and "test images" in exported.checked_on
    data = b"".join(c.data for c in stub.GetWeights(pb.GetWeightsRequest(sha256=exported.sha256)))
    model = onnx.load_from_string(data)
    assert model.opset_import[0].version >= 17
    card = json.loads({p.key: p.value for p in model.metadata_props}["afa_model_card"])
    assert card["classNames"] == [str(d) for d in range(10)]
    session = _servicer_session(server, sid)
    x = session.data.normalise(session.data.test.x[:7]).contiguous()  # another batch size: the batch axis is dynamic
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        want = session.target.eval()(x).numpy()
    assert np.abs(got - want).max() <= 1e-4


def test_an_export_that_does_not_reproduce_the_model_is_refused_naming_the_figure(stub, monkeypatch):
    pytest.importorskip("onnxruntime")
    from afa_worker import onnx_export

    monkeypatch.setattr(onnx_export, "MAX_LOGIT_DIFFERENCE", -1.0)  # no graph can pass: the refusal path
    sid = _train(stub, pb.DataSpec(mnist=pb.MnistData(), labels_per_class=5, seed=0), steps=2)
    with pytest.raises(grpc.RpcError) as err:
        stub.ExportOnnx(pb.ExportOnnxRequest(session_id=sid))
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert "logits differ from PyTorch's by" in err.value.details() and "not kept" in err.value.details()


def _png(size=(8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("L", size, 128).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("images, field, problem", [
    ([pb.InputImage(encoded=_png()), pb.InputImage(encoded=b"not an image")], "images[1].encoded", "is not an image Pillow can decode"),
    ([pb.InputImage(encoded=_png()[:30])], "images[0].encoded", "is not an image Pillow can decode"),
    ([pb.InputImage(raw=pb.RawImage(pixels=bytes(10), height=28, width=28, channels=1))], "images[0].raw.pixels", "holds 10 bytes"),
    ([pb.InputImage(raw=pb.RawImage(pixels=bytes(4), height=2, width=1, channels=2))], "images[0].raw.channels", "must be 1, 3 or 4"),
    ([pb.InputImage(raw=pb.RawImage(pixels=b"", height=0, width=5, channels=1))], "images[0].raw", "height and width must be in"),
    ([pb.InputImage(raw=pb.RawImage(pixels=b"", height=9000, width=9000, channels=1))], "images[0].raw", "more than the"),
    ([pb.InputImage()], "images[0]", "has neither encoded bytes nor raw pixels"),
    ([pb.InputImage(raw=pb.RawImage(pixels=bytes(1), height=1, width=1, channels=1))] * 1025, "images", "at most 1024 per request"),
])
def test_bad_images_are_refused_naming_their_index_and_the_worker_serves_on(stub, images, field, problem):
    sid = _train(stub, pb.DataSpec(mnist=pb.MnistData(), labels_per_class=2, seed=0), steps=1)
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(pb.PredictRequest(session_id=sid, images=images))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}: ") and problem in err.value.details()
    assert len(stub.Predict(pb.PredictRequest(session_id=sid, images=[pb.InputImage(encoded=_png((40, 30)))])).predictions) == 1


def test_a_checkpoint_without_a_model_card_is_refused_saying_what_it_lacks(stub, tmp_path):
    session = create_session(pb.CreateSessionRequest(backbone=pb.BackboneSpec(name="small_resnet", width=4),
                                                     data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=2), seed=0))
    old, *_ = save_checkpoint(session.target, str(tmp_path / "old"), {})  # as an older worker saved it: no card
    with pytest.raises(grpc.RpcError) as err:
        stub.LoadModel(pb.LoadModelRequest(path=old))
    details = err.value.details()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("path: ")
    assert "has no model card" in details and "class names" in details and "mean/std" in details
    with pytest.raises(grpc.RpcError) as err:
        stub.LoadModel(pb.LoadModelRequest(path=str(tmp_path / "missing.safetensors")))
    assert "does not exist" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.LoadModel(pb.LoadModelRequest(path="/etc/passwd"))
    assert err.value.details().startswith("path: /etc/passwd is not a readable safetensors checkpoint")
