"""Images to model inputs by a model card's eval transform (proto ImageTransform): decode (Pillow) or
take raw uint8 pixels, convert the colour, resize ("square" or "shorter_side", by Pillow's or by
torch's bilinear), center-crop to the input size, then normalise as the training data was
(data.normalise). The SDK's Node inference (ts-sdk/src/model/preprocess.ts) follows the same
definition; a test checks the two agree. Every bad image is refused naming its index."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.data import normalise, resize_square
from afa_worker.data.images import MAX_IMAGE_PIXELS
from afa_worker.errors import SpecError

__all__ = ["to_inputs", "decode", "MAX_PREDICT_IMAGES", "MAX_SIDE"]

#: Images one Predict request may carry (and the message limit, 16 MiB, bounds their bytes).
MAX_PREDICT_IMAGES = 1024
#: Pixels a raw image's side may have.
MAX_SIDE = 16384


def _pil():
    from PIL import Image  # noqa: PLC0415 - only images need Pillow

    return Image


def _from_raw(raw: pb.RawImage, field: str):
    h, w, c = raw.height, raw.width, raw.channels
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise SpecError(f"{field}.raw", f"height and width must be in [1, {MAX_SIDE}], got {h}x{w}")
    if h * w > MAX_IMAGE_PIXELS:
        raise SpecError(f"{field}.raw", f"has {h}x{w} pixels, more than the {MAX_IMAGE_PIXELS} an image may have")
    if c not in (1, 3, 4):
        raise SpecError(f"{field}.raw.channels", f"must be 1, 3 or 4 (RGBA), got {c}", ["1", "3", "4"])
    if len(raw.pixels) != h * w * c:
        raise SpecError(f"{field}.raw.pixels", f"holds {len(raw.pixels)} bytes; {h}x{w}x{c} uint8 pixels are {h * w * c}")
    array = np.frombuffer(raw.pixels, dtype=np.uint8).reshape(h, w, c)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[c]
    return _pil().fromarray(array[:, :, 0] if c == 1 else array, mode)


def decode(data: bytes, field: str):
    """An encoded image as a Pillow image, refused (naming the field) when it is not one or too large."""
    from PIL import UnidentifiedImageError  # noqa: PLC0415

    Image = _pil()
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise SpecError(field, f"has {img.width}x{img.height} pixels, more than the {MAX_IMAGE_PIXELS} an image may have")
        img.load()
    except SpecError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise SpecError(field, f"is not an image Pillow can decode ({exc})") from exc
    return img


def _resized(img, t: pb.ImageTransform) -> np.ndarray:
    """The colour-converted image resized to the transform's resize target, as uint8 (H, W, C):
    "square" resizes to it; "shorter_side" scales the shorter side to it and center-crops the other
    (as data/images.py decoded the training images)."""
    Image = _pil()
    img = img.convert("RGB" if t.color == "rgb" else "L")
    if t.resize == "shorter_side":
        scale = t.resize_height / min(img.width, img.height)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        if img.size != size:
            img = img.resize(size, Image.BILINEAR)
        return _center_crop(np.array(img, dtype=np.uint8).reshape(img.height, img.width, -1), t.resize_height, t.resize_width)
    size = (t.resize_width, t.resize_height)
    if t.resample == "torch_bilinear":
        x = torch.from_numpy(np.array(img, dtype=np.uint8).reshape(img.height, img.width, -1)).permute(2, 0, 1)[None]
        return resize_square(x, size[1], size[0])[0].permute(1, 2, 0).numpy()
    if img.size != size:
        img = img.resize(size, Image.BILINEAR)
    return np.array(img, dtype=np.uint8).reshape(img.height, img.width, -1)


def _center_crop(array: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = array.shape[:2]
    if h < height or w < width:
        raise ValueError(f"resized to {h}x{w}, smaller than the {height}x{width} input")
    top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return array[top:top + height, left:left + width]


def to_uint8(images: Sequence[pb.InputImage], t: pb.ImageTransform, field: str = "images") -> torch.Tensor:
    """uint8 (N, C, H, W) model inputs before normalisation."""
    if len(images) > MAX_PREDICT_IMAGES:
        raise SpecError(field, f"holds {len(images)} images; at most {MAX_PREDICT_IMAGES} per request")
    out = []
    for i, image in enumerate(images):
        where = f"{field}[{i}]"
        kind = image.WhichOneof("image")
        if kind is None:
            raise SpecError(where, "has neither encoded bytes nor raw pixels", ["encoded", "raw"])
        img = decode(image.encoded, f"{where}.encoded") if kind == "encoded" else _from_raw(image.raw, where)
        try:
            array = _center_crop(_resized(img, t), t.height, t.width)
        except (OSError, ValueError) as exc:
            raise SpecError(where, f"cannot be brought to the model's input: {exc}") from exc
        out.append(torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))))
    return torch.stack(out) if out else torch.zeros(0, 3 if t.color == "rgb" else 1, t.height, t.width, dtype=torch.uint8)


def to_inputs(images: Sequence[pb.InputImage], t: pb.ImageTransform, device: torch.device, field: str = "images",
              memory_format: torch.memory_format = torch.channels_last) -> torch.Tensor:
    """Normalised float model inputs (N, C, H, W) on ``device``, in the model's layout."""
    mean = torch.tensor(list(t.mean), dtype=torch.float32).view(1, -1, 1, 1).to(device)
    std = torch.tensor(list(t.std), dtype=torch.float32).view(1, -1, 1, 1).to(device)
    return normalise(to_uint8(images, t, field).to(device), mean, std, memory_format)
