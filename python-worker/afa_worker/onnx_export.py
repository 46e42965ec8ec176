"""ONNX export of a session's model: torch.onnx.export (opset >= 17, a dynamic batch axis), the model
card in the graph's metadata_props, checked before it is kept: onnxruntime runs the exported graph
on real images and its logits must be within 1e-4 of PyTorch's (fp32, on the CPU), or the export
is refused naming the figure. onnx, onnxscript and onnxruntime are the worker's optional extra
`onnx` (`pip install 'afa-worker[onnx]'`; `afa worker setup --onnx`)."""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.errors import SpecError
from afa_worker.model_card import METADATA_KEY, card_json

__all__ = ["export_onnx", "ExportRefused", "MAX_LOGIT_DIFFERENCE", "DEFAULT_OPSET", "MIN_OPSET"]

MAX_LOGIT_DIFFERENCE = 1e-4
DEFAULT_OPSET = 18
MIN_OPSET = 17
#: Images the check runs on at most.
CHECK_IMAGES = 64
#: Batch sizes the exported graph accepts (a dynamic axis needs bounds for the exporter).
MAX_BATCH = 4096

_log = logging.getLogger("afa_worker")


class ExportRefused(RuntimeError):
    """The exported graph does not reproduce the model (ABORTED: nothing was kept)."""


def _require_onnx():
    try:
        import onnx  # noqa: PLC0415
        import onnxruntime  # noqa: PLC0415
        import onnxscript  # noqa: F401, PLC0415 - torch.onnx's exporter needs it
    except ImportError as exc:
        raise SpecError("session_id", f"this worker's Python cannot export ONNX ({exc}): install the worker's onnx extra "
                                      "(`npx afa worker setup --onnx`, or pip install onnx onnxscript onnxruntime)") from exc
    return onnx, onnxruntime


def export_onnx(model: nn.Module, card: pb.ModelCard, check: torch.Tensor, opset: int = 0) -> tuple[bytes, float, int]:
    """The ONNX bytes of ``model`` with ``card`` in its metadata, the max |logit difference| on
    ``check`` (normalised inputs), and the opset; ExportRefused when the difference is too large."""
    onnx, ort = _require_onnx()
    opset = opset or DEFAULT_OPSET
    if opset < MIN_OPSET:
        raise SpecError("opset", f"must be >= {MIN_OPSET}, got {opset}")
    # Exported in fp32 on the CPU, in the default layout: the graph a Node service runs.
    cpu = copy.deepcopy(model).float().to("cpu", memory_format=torch.contiguous_format).eval()
    x = check[:CHECK_IMAGES].detach().float().cpu().contiguous()
    if len(x) == 0:
        raise SpecError("check_images", "there are no images to check the export on")
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        program = torch.onnx.export(cpu, (x,), dynamo=True, opset_version=opset, dynamic_shapes=({0: batch},),
                                    input_names=["image"], output_names=["logits"], verbose=False)
        expected = cpu(x).numpy()
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, card_json(card)
    data = proto.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(data))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    difference = float(abs(got - expected).max())
    _log.info("ONNX export: opset %d, %d bytes, max |logit difference| %.2e on %d images", opset, len(data), difference, len(x))
    if not difference <= MAX_LOGIT_DIFFERENCE:
        raise ExportRefused(f"the exported graph's logits differ from PyTorch's by {difference:.3g} (more than "
                            f"{MAX_LOGIT_DIFFERENCE:g}) on {len(x)} images: not kept")
    return data, difference, opset
