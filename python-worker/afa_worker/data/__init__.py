"""Data sets as uint8 tensors (in memory, or memory-mapped from the node's decoded cache) with
few-label sampling, class subsets and a validation split carved from the training pool by seed.
Model selection uses validation only; test is evaluated on request. Image sets (ImageFolder,
packed) are decoded by data/images.py; with a crop, training batches are random crops with flips
(batches.random_crop_flip) and everything else sees the center crop."""

from __future__ import annotations

import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.data.images import DecodeSpec, ImageSet, decode, folder_set, packed_set
from afa_worker.data.sources import (
    FASHION_MNIST_DIR,
    RawSplits,
    find_mnist_dir,
    load_fashion_mnist,
    load_mnist_json,
    require_dir,
)
from afa_worker.contract import check_registry
from afa_worker.data.budget import check_data_budget
from afa_worker.cancel import check_cancelled
from afa_worker.errors import SpecError

__all__ = ["DATASETS", "TensorSplit", "DataBundle", "DataContext", "load_data", "normalise", "resize_square", "center_crop"]


@dataclass
class DataContext:
    """What loading a data set may use beyond its spec, and what it reports back."""

    #: The worker's packed data set store (DataSpec.packed).
    datasets: object | None = None
    #: Threads that decode images.
    threads: int = 1
    progress: Callable[[pb.Progress], None] = lambda _p: None
    #: Filled in by the loaders: the packed set's sha256, images skipped, the phases' durations.
    sha256: str = ""
    skipped: int = 0
    phases: list[pb.PhaseTiming] = field(default_factory=list)

@dataclass
class TensorSplit:
    x: torch.Tensor  # uint8, (N, C, H, W)
    y: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device) -> TensorSplit:
        return TensorSplit(self.x.to(device), self.y.to(device))


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) cut to size x size around the center (offsets as Python rounds them, as the model card's transform)."""
    h, w = x.shape[-2:]
    if h == size and w == size:
        return x
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top:top + size, left:left + size]


def normalise(x_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              memory_format: torch.memory_format = torch.channels_last) -> torch.Tensor:
    """Float inputs for the model, in the model's memory layout (see afa_worker.layout): the one
    definition of the last step of the eval transform, for training batches and predictions alike.
    The bytes are reordered before the arithmetic, which keeps their layout: one copy of uint8."""
    if x_uint8.dim() == 4:
        x_uint8 = x_uint8.contiguous(memory_format=memory_format)
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
    #: > 0: the model's input side; training images are kept larger, for random crops.
    crop: int = 0
    #: The layout the session's models run in (afa_worker.layout); inputs follow it.
    memory_format: torch.memory_format = torch.channels_last

    @property
    def in_channels(self) -> int:
        return int(self.train.x.shape[1])

    def normalise(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """Model inputs; images larger than the crop (the training split's) are center-cropped first."""
        if self.crop and x_uint8.shape[-1] != self.crop:
            x_uint8 = center_crop(x_uint8, self.crop)
        return normalise(x_uint8, self.mean, self.std, self.memory_format)

    def to(self, device: torch.device) -> DataBundle:
        move = lambda s: s.to(device) if s is not None else None  # noqa: E731
        return DataBundle(self.train.to(device), move(self.val), move(self.test), self.num_classes,
                          self.class_names, self.mean.to(device), self.std.to(device), self.transform, self.crop,
                          self.memory_format)


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


def _fashion_mnist(spec: pb.DataSpec, _ctx: DataContext) -> RawSplits:
    directory = spec.fashion_mnist.directory
    return _cached(("fashion_mnist", *_file_identity(directory, FASHION_MNIST_DIR)), lambda: load_fashion_mnist(directory))


def _mnist(spec: pb.DataSpec, _ctx: DataContext) -> RawSplits:
    directory = spec.mnist.directory
    return _cached(("mnist", *_file_identity(directory, find_mnist_dir())), lambda: load_mnist_json(directory))


def _decoded(images: ImageSet, spec: pb.DataSpec, ctx: DataContext) -> RawSplits:
    """An image set decoded (or read from the node's cache) with progress, as RawSplits."""
    rgb = spec.color in (pb.COLOR_MODE_RGB, pb.COLOR_MODE_NATIVE)
    mode = "shorter_side" if spec.resize_mode == pb.RESIZE_MODE_SHORTER_SIDE else "square"
    started = time.perf_counter()

    def report(done: int, total: int, detail: str) -> None:
        seconds = time.perf_counter() - started
        ctx.progress(pb.Progress(phase="data_decode", done=done, total=total, unit="images", rate=done / max(seconds, 1e-9),
                                 seconds=seconds, finished=done == total, detail=detail))

    out = decode(images, DecodeSpec(rgb, spec.image_size, mode), ctx.threads, spec.skip_bad_files, report)
    ctx.skipped = len(out.skipped)
    ctx.phases.append(pb.PhaseTiming(phase="data_decode", seconds=out.seconds, detail="cache hit" if out.cache_hit else
                                     f"{len(images.entries)} images decoded" + (f", {len(out.skipped)} skipped" if out.skipped else "")))
    x = {s: v for s, v in out.splits.items()}
    mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if rgb else ((0.449,), (0.226,))
    nothing = (None, None)
    return RawSplits(*x["train"], *x.get("test", nothing), *x.get("val", nothing), class_names=out.class_names, mean=mean, std=std)


def _image_folder(spec: pb.DataSpec, ctx: DataContext) -> RawSplits:
    field_ = "data.image_folder.root"
    if not spec.image_folder.root:
        raise SpecError(field_, "an ImageFolder root directory is required")
    require_dir(Path(spec.image_folder.root), field_)
    return _decoded(folder_set(spec.image_folder.root, field_), spec, ctx)


def _packed(spec: pb.DataSpec, ctx: DataContext) -> RawSplits:
    from afa_worker.weight_store import DatasetStore, check_sha256  # noqa: PLC0415

    field_ = "data.packed.sha256"
    sha = check_sha256(spec.packed.sha256, field_)
    store = ctx.datasets if ctx.datasets is not None else DatasetStore()
    ctx.sha256 = sha
    return _decoded(packed_set(store.require(sha, field_), sha, field_), spec, ctx)


#: One reader per data set of the proto's ``DataSpec.dataset`` oneof (checked at import).
DATASETS: dict[str, Callable[[pb.DataSpec, DataContext], RawSplits]] = {
    "fashion_mnist": _fashion_mnist,
    "mnist": _mnist,
    "image_folder": _image_folder,
    "packed": _packed,
}
check_registry(DATASETS, pb.DataSpec, "dataset")


def _read(spec: pb.DataSpec, ctx: DataContext) -> RawSplits:
    which = spec.WhichOneof("dataset")
    if which is None:
        raise SpecError("data.dataset", "no data set given", list(DATASETS))
    return DATASETS[which](spec, ctx)


def _convert_color(x: np.ndarray, color: int) -> np.ndarray:
    if color == pb.COLOR_MODE_RGB and x.shape[1] == 1:
        return np.repeat(x, 3, axis=1)
    if color == pb.COLOR_MODE_GRAYSCALE and x.shape[1] == 3:
        gray = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
        return np.clip(np.rint(gray), 0, 255).astype(np.uint8)[:, None]
    return x


#: Images resized at once: the float copy of a chunk, not of the whole set, is what resizing adds.
RESIZE_CHUNK = 512


def resize_square(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 (N, C, H, W) images resized by torch's bilinear interpolation (align_corners=False),
    rounded back to uint8: how the built-in data sets are resized (the model card's "torch_bilinear")."""
    if x.shape[-2] == height and x.shape[-1] == width:
        return x
    out = torch.empty((x.shape[0], x.shape[1], height, width), dtype=torch.uint8, device=x.device)
    for start in range(0, x.shape[0], RESIZE_CHUNK):
        check_cancelled("resizing the images")
        chunk = F.interpolate(x[start:start + RESIZE_CHUNK].float(), size=(height, width), mode="bilinear", align_corners=False)
        out[start:start + RESIZE_CHUNK] = chunk.round().clamp(0, 255).to(torch.uint8)
    return out


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return resize_square(x, size, size) if size else x


def _take(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """x[idx], without a copy when idx is every row in order (a memory-mapped set stays mapped)."""
    return x if len(idx) == len(x) and np.array_equal(idx, np.arange(len(x))) else x[idx]


def _select_classes(x, y, classes: list[int], num_classes: int):
    keep = np.isin(y, classes)
    remap = np.full(num_classes, -1, np.int64)
    remap[classes] = np.arange(len(classes))
    return (x if keep.all() else x[keep]), remap[y[keep]]


def _per_class_take(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picked = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(picked))


def _classes(spec: pb.DataSpec, num_source_classes: int, names: list[str]) -> list[int]:
    classes = list(spec.classes)
    if not classes:
        return list(range(num_source_classes))
    bad = [c for c in classes if c >= num_source_classes]
    if bad or len(set(classes)) != len(classes):
        raise SpecError("data.classes", f"{classes} must be distinct class indices", [f"{i} ({n})" for i, n in enumerate(names)])
    return classes


def _train_pools(train_y: np.ndarray, spec: pb.DataSpec, classes: list[int], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The validation images carved by seed, and the labelled pool left (few-label sampling applied)."""
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
    return val_idx, pool


def _crop_size(spec: pb.DataSpec, side: int) -> int:
    if spec.crop and spec.crop > side:
        raise SpecError("data.crop", f"{spec.crop} is larger than the {side}-pixel images it would cut (image_size {spec.image_size}); "
                                     f"use at most {side}")
    return spec.crop if spec.crop and spec.crop < side else 0


def _transform(spec: pb.DataSpec, train: TensorSplit, crop: int, mean, std) -> pb.ImageTransform:
    channels = train.x.shape[1]
    height, width = (int(v) for v in train.x.shape[-2:])
    image_set = spec.WhichOneof("dataset") in ("image_folder", "packed")
    shorter = image_set and spec.resize_mode == pb.RESIZE_MODE_SHORTER_SIDE
    return pb.ImageTransform(
        color="rgb" if channels == 3 else "grayscale", height=crop or height, width=crop or width,
        resize="shorter_side" if shorter else "square", resize_height=height, resize_width=width,
        # Image sets are decoded and resized by Pillow; the built-in sets by torch (from 28x28).
        resample="pil_bilinear" if image_set else "torch_bilinear", mean=mean, std=std)


def load_data(spec: pb.DataSpec, ctx: DataContext | None = None) -> DataBundle:
    raw = _read(spec, ctx or DataContext())
    num_source_classes = int(raw.train_y.max()) + 1
    names = raw.class_names or [str(c) for c in range(num_source_classes)]
    classes = _classes(spec, num_source_classes, names)
    train_x, train_y = _select_classes(raw.train_x, raw.train_y, classes, num_source_classes)
    val_idx, pool = _train_pools(train_y, spec, classes, names)
    _check_budget(spec, raw, len(pool) + len(val_idx) + (0 if len(val_idx) or raw.val_x is None else len(raw.val_x)) +
                  (0 if raw.test_x is None else min(len(raw.test_x), spec.test_per_class * len(classes) or len(raw.test_x))))
    splits: dict[str, TensorSplit | None] = {"train": _tensor(_take(train_x, pool), train_y[pool], spec), "val": None, "test": None}
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
    crop = _crop_size(spec, int(splits["train"].x.shape[-1]))
    for name in ("val", "test"):  # evaluated on their center crops only: kept cropped
        if crop and splits[name] is not None:
            splits[name] = TensorSplit(center_crop(splits[name].x, crop).contiguous(), splits[name].y)
    channels = splits["train"].x.shape[1]
    mean, std = raw.mean, raw.std
    if len(mean) != channels:
        mean, std = (float(np.mean(mean)),) * channels, (float(np.mean(std)),) * channels
    return DataBundle(splits["train"], splits["val"], splits["test"], len(classes), [names[c] for c in classes],
                      torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1),
                      _transform(spec, splits["train"], crop, mean, std), crop)


def _check_budget(spec: pb.DataSpec, raw, images: int) -> None:
    """The splits as they will be held (colour converted, resized) must fit the worker's data budget."""
    native_c, native_h, native_w = raw.train_x.shape[1:]
    channels = 3 if spec.color == pb.COLOR_MODE_RGB else 1 if spec.color == pb.COLOR_MODE_GRAYSCALE else native_c
    side_h, side_w = (spec.image_size, spec.image_size) if spec.image_size else (native_h, native_w)
    check_data_budget("data.image_size" if spec.image_size else "data", images, channels, side_h, side_w)


def _carve(y: np.ndarray, per_class: int, rng: np.random.Generator, field: str) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(y)
    if counts.min() <= per_class:
        raise SpecError(field, f"{per_class} leaves no training images in the smallest class "
                               f"({int(counts.min())} images); use at most {int(counts.min()) - 1}")
    val = _per_class_take(y, per_class, rng)
    return val, np.setdiff1d(np.arange(len(y)), val)


def _tensor(x: np.ndarray, y: np.ndarray, spec: pb.DataSpec) -> TensorSplit:
    x = _convert_color(x, spec.color)
    with warnings.catch_warnings():
        # A memory-mapped decoded set is read-only; the data tensors are never written.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        images = torch.from_numpy(np.ascontiguousarray(x))
    return TensorSplit(_resize(images, spec.image_size), torch.from_numpy(np.ascontiguousarray(y)))
