"""Data sets as in-memory uint8 tensors with few-label sampling, class subsets and a validation
split carved from the training pool by seed. Model selection uses validation only; test is
evaluated on request."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.data.sources import (
    FASHION_MNIST_DIR,
    RawSplits,
    find_mnist_dir,
    load_fashion_mnist,
    load_image_folder,
    load_mnist_json,
)
from afa_worker.contract import check_registry
from afa_worker.errors import SpecError

__all__ = ["DATASETS", "TensorSplit", "DataBundle", "load_data", "normalise", "resize_square"]

@dataclass
class TensorSplit:
    x: torch.Tensor  # uint8, (N, C, H, W)
    y: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device) -> TensorSplit:
        return TensorSplit(self.x.to(device), self.y.to(device))


def normalise(x_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Float inputs for the model, in its channels-last layout (see ``create_session``): the one
    definition of the last step of the eval transform, for training batches and predictions alike.
    The bytes are reordered before the arithmetic, which keeps their layout: one copy of uint8."""
    if x_uint8.dim() == 4:
        x_uint8 = x_uint8.contiguous(memory_format=torch.channels_last)
    return (x_uint8.float() / 255.0 - mean) / std


@dataclass
class DataBundle:
    train: TensorSplit
    val: TensorSplit | None
    test: TensorSplit | None
    num_classes: int
    class_names: list[str]
    mean: torch.Tensor  # (1, C, 1, 1)
    std: torch.Tensor
    #: How an image becomes one of these (for the model card): colour, size, resize, mean/std.
    transform: pb.ImageTransform | None = None

    @property
    def in_channels(self) -> int:
        return int(self.train.x.shape[1])

    def normalise(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return normalise(x_uint8, self.mean, self.std)

    def to(self, device: torch.device) -> DataBundle:
        move = lambda s: s.to(device) if s is not None else None  # noqa: E731
        return DataBundle(self.train.to(device), move(self.val), move(self.test), self.num_classes,
                          self.class_names, self.mean.to(device), self.std.to(device), self.transform)


# Decoded data sets kept per worker, so a sweep's sessions do not parse the same files again
# (the MNIST JSON alone takes about a second). Keyed by the files' identity; arrays are read-only.
_RAW_CACHE: OrderedDict[tuple, RawSplits] = OrderedDict()
_RAW_CACHE_ENTRIES = 4
_RAW_CACHE_LOCK = threading.Lock()


def _file_identity(directory: str, fallback: Path | None) -> tuple:
    root = Path(directory) if directory else fallback
    if root is None or not root.is_dir():
        return (directory,)
    return (str(root.resolve()), *sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in root.iterdir() if p.is_file()))


def _cached(key: tuple, load) -> RawSplits:
    with _RAW_CACHE_LOCK:
        if key in _RAW_CACHE:
            _RAW_CACHE.move_to_end(key)
            return _RAW_CACHE[key]
    raw = load()
    for array in (raw.train_x, raw.train_y, raw.test_x, raw.test_y):
        if array is not None:
            array.setflags(write=False)
    with _RAW_CACHE_LOCK:
        _RAW_CACHE[key] = raw
        while len(_RAW_CACHE) > _RAW_CACHE_ENTRIES:
            _RAW_CACHE.popitem(last=False)
    return raw


def _fashion_mnist(spec: pb.DataSpec) -> RawSplits:
    directory = spec.fashion_mnist.directory
    return _cached(("fashion_mnist", *_file_identity(directory, FASHION_MNIST_DIR)), lambda: load_fashion_mnist(directory))


def _mnist(spec: pb.DataSpec) -> RawSplits:
    directory = spec.mnist.directory
    return _cached(("mnist", *_file_identity(directory, find_mnist_dir())), lambda: load_mnist_json(directory))


def _image_folder(spec: pb.DataSpec) -> RawSplits:
    keep_rgb = spec.color in (pb.COLOR_MODE_RGB, pb.COLOR_MODE_NATIVE)
    return load_image_folder(spec.image_folder.root, spec.image_size, keep_rgb)


#: One reader per data set of the proto's ``DataSpec.dataset`` oneof (checked at import).
DATASETS: dict[str, Callable[[pb.DataSpec], RawSplits]] = {
    "fashion_mnist": _fashion_mnist,
    "mnist": _mnist,
    "image_folder": _image_folder,
}
check_registry(DATASETS, pb.DataSpec, "dataset")


def _read(spec: pb.DataSpec) -> RawSplits:
    which = spec.WhichOneof("dataset")
    if which is None:
        raise SpecError("data.dataset", "no data set given", list(DATASETS))
    return DATASETS[which](spec)


def _convert_color(x: np.ndarray, color: int) -> np.ndarray:
    if color == pb.COLOR_MODE_RGB and x.shape[1] == 1:
        return np.repeat(x, 3, axis=1)
    if color == pb.COLOR_MODE_GRAYSCALE and x.shape[1] == 3:
        gray = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
        return np.clip(np.rint(gray), 0, 255).astype(np.uint8)[:, None]
    return x


def resize_square(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 (N, C, H, W) images resized by torch's bilinear interpolation (align_corners=False),
    rounded back to uint8: how the built-in data sets are resized (the model card's "torch_bilinear")."""
    if x.shape[-2] == height and x.shape[-1] == width:
        return x
    out = F.interpolate(x.float(), size=(height, width), mode="bilinear", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return resize_square(x, size, size) if size else x


def _select_classes(x, y, classes: list[int], num_classes: int):
    keep = np.isin(y, classes)
    remap = np.full(num_classes, -1, np.int64)
    remap[classes] = np.arange(len(classes))
    return x[keep], remap[y[keep]]


def _per_class_take(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picked = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(picked))


def load_data(spec: pb.DataSpec) -> DataBundle:
    raw = _read(spec)
    num_source_classes = int(raw.train_y.max()) + 1
    names = raw.class_names or [str(c) for c in range(num_source_classes)]
    classes = list(spec.classes)
    if classes:
        bad = [c for c in classes if c >= num_source_classes]
        if bad or len(set(classes)) != len(classes):
            raise SpecError("data.classes", f"{classes} must be distinct class indices",
                            [f"{i} ({n})" for i, n in enumerate(names)])
    else:
        classes = list(range(num_source_classes))

    train_x, train_y = _select_classes(raw.train_x, raw.train_y, classes, num_source_classes)
    rng = np.random.default_rng(spec.seed)
    val_idx = np.zeros(0, np.int64)
    pool = np.arange(len(train_y))
    if spec.val_per_class:
        val_idx, pool = _carve(train_y, spec.val_per_class, rng, "data.val_per_class")
    if spec.labels_per_class:
        counts = np.bincount(train_y[pool], minlength=len(classes))
        short = [(c, int(n)) for c, n in enumerate(counts) if n < spec.labels_per_class]
        if short:
            c, n = short[0]
            raise SpecError("data.labels_per_class",
                            f"{spec.labels_per_class} exceeds the {n} training images class {names[classes[c]]!r} "
                            f"has after the validation split; use at most {int(counts.min())}")
        pool = pool[_per_class_take(train_y[pool], spec.labels_per_class, rng)]

    splits: dict[str, TensorSplit | None] = {"train": _tensor(train_x[pool], train_y[pool], spec),
                                             "val": None, "test": None}
    if len(val_idx):
        splits["val"] = _tensor(train_x[val_idx], train_y[val_idx], spec)
    elif raw.val_x is not None:
        splits["val"] = _tensor(*_select_classes(raw.val_x, raw.val_y, classes, num_source_classes), spec)
    if raw.test_x is not None:
        test_x, test_y = _select_classes(raw.test_x, raw.test_y, classes, num_source_classes)
        if spec.test_per_class:
            # Fixed seed: every run of every method is scored on the same test images.
            keep = _per_class_take(test_y, spec.test_per_class, np.random.default_rng(0))
            test_x, test_y = test_x[keep], test_y[keep]
        splits["test"] = _tensor(test_x, test_y, spec)

    channels = splits["train"].x.shape[1]
    mean, std = raw.mean, raw.std
    if len(mean) != channels:
        mean, std = (float(np.mean(mean)),) * channels, (float(np.mean(std)),) * channels
    height, width = splits["train"].x.shape[-2:]
    transform = pb.ImageTransform(
        color="rgb" if channels == 3 else "grayscale", height=int(height), width=int(width), resize="square",
        resize_height=int(height), resize_width=int(width),
        # ImageFolder images are decoded and resized by Pillow; the built-in sets by torch (from 28x28).
        resample="pil_bilinear" if spec.WhichOneof("dataset") == "image_folder" else "torch_bilinear", mean=mean, std=std)
    return DataBundle(splits["train"], splits["val"], splits["test"], len(classes),
                      [names[c] for c in classes],
                      torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1), transform)


def _carve(y: np.ndarray, per_class: int, rng: np.random.Generator, field: str) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(y)
    if counts.min() <= per_class:
        raise SpecError(field, f"{per_class} leaves no training images in the smallest class "
                               f"({int(counts.min())} images); use at most {int(counts.min()) - 1}")
    val = _per_class_take(y, per_class, rng)
    return val, np.setdiff1d(np.arange(len(y)), val)


def _tensor(x: np.ndarray, y: np.ndarray, spec: pb.DataSpec) -> TensorSplit:
    x = _convert_color(x, spec.color)
    return TensorSplit(_resize(torch.from_numpy(np.ascontiguousarray(x)), spec.image_size),
                       torch.from_numpy(np.ascontiguousarray(y)))
