"""Image data sets: an ImageFolder on the worker's disk, or a packed set from the data set store
(a deterministic tar the SDK made of a folder or of images in memory), decoded once per node.

- Listing checks the tree before anything is decoded: a class folder in val/ or test/ that train/
  lacks, an empty class, a symlink that leaves the root, anything but a regular file: each refused
  naming it.
- Decoding runs in a thread pool the size of the worker's torch threads (Pillow releases the GIL
  while it decodes), reports progress, stops within an image when cancelled, and collects every
  image that does not decode (up to a bound) into one error, or skips them (skip_bad_files).
- The decoded uint8 arrays are cached on the node's disk (decoded/ under the cache), keyed by the
  files' identity and the transform, and memory-mapped by every worker of the node: the second
  session starts without decoding. The cache is bounded ($AFA_DECODED_CACHE_GB, default 50): the
  least recently used sets go first (a session that has one mapped keeps reading it: the file
  lives on until it is unmapped)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from afa_worker.cancel import check_cancelled
from afa_worker.data.budget import check_data_budget
from afa_worker.errors import SpecError, clip
from afa_worker.limits import LIMITS

__all__ = ["ImageEntry", "ImageSet", "DecodeSpec", "Decoded", "folder_set", "packed_set", "decode", "IMAGE_SUFFIXES",
           "MAX_IMAGE_PIXELS", "MANIFEST", "MAX_LISTED_PROBLEMS"]

#: Pixels an image may have before it is decoded (64 MP: 8192 x 8192).
MAX_IMAGE_PIXELS = 64 * 1024 * 1024
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
#: A packed set's manifest: {"format": "afa-dataset/1", "classNames": [...]} (label order).
MANIFEST = "afa-dataset.json"
MANIFEST_FORMAT = "afa-dataset/1"
#: Problems listed in one error before the rest are counted.
MAX_LISTED_PROBLEMS = 20
#: Version of the decoded cache's layout and decoding: bumped when either changes.
_CACHE_VERSION = 1
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageEntry:
    split: str
    label: int
    #: How errors name the image: its path in the folder or the packed set.
    name: str
    read: Callable[[], bytes]


@dataclass
class ImageSet:
    entries: list[ImageEntry]
    class_names: list[str]
    #: What identifies the files (their paths, sizes and times, or the packed set's sha256): the cache key's part.
    identity: str
    #: The field errors name, and the folder (or packed set) the entries' names are relative to.
    field: str
    where: str = ""


@dataclass(frozen=True)
class DecodeSpec:
    """How an image becomes a stored array: colour, and the square side (0 = native size) by "square" or "shorter_side"."""

    rgb: bool
    size: int
    mode: str = "square"

    def key(self) -> str:
        return f"{'rgb' if self.rgb else 'l'}-{self.size}-{self.mode}-v{_CACHE_VERSION}"


@dataclass
class Decoded:
    """Per split: uint8 images (N, C, H, W) and int64 labels, possibly memory-mapped from the cache."""

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)
    cache_hit: bool = False
    seconds: float = 0.0


def _problems(field: str, what: tuple[str, str], items: list[str], where: str = "") -> SpecError:
    """One error listing every item (up to a bound); ``what`` is (one, several): "image does not decode"."""
    shown = [clip(item, 200) for item in items[:MAX_LISTED_PROBLEMS]]
    more = f", and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    noun = what[0] if len(items) == 1 else what[1]
    return SpecError(field, f"{len(items)} {noun}{f' in {where}' if where else ''}: {'; '.join(shown)}{more}", limit=6000)


def _files_of(folder: Path, root: Path) -> tuple[list[Path], list[str]]:
    """A class folder's image files, and the problems with them (links out of the root, non-regular files)."""
    files, problems = [], []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        real = Path(os.path.realpath(path))
        if root != real and root not in real.parents:
            problems.append(f"{path} is a link out of the data set's root {root}")
            continue
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            problems.append(f"{path} is not a regular file (a FIFO, device or directory)")
            continue
        files.append(path)
    return files, problems


def folder_set(root: str, field: str) -> ImageSet:
    """An ImageFolder tree: train/<class>/*, optional val/ and test/ with the same classes."""
    base = Path(root)
    real_root = Path(os.path.realpath(base))
    train = base / "train"
    if not train.is_dir():
        raise SpecError(field, f"{base} has no train/ folder (expected train/ and optional val/ and test/)")
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    if not classes:
        raise SpecError(field, f"{train} has no class folders")
    entries, problems, empty, identity = [], [], [], hashlib.sha256(str(real_root).encode())
    for split in SPLITS:
        folder = base / split
        if not folder.is_dir():
            continue
        extra = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in classes)
        if extra:
            raise SpecError(field, f"{folder} has class folders train/ lacks: {', '.join(extra)} (every class must have training "
                                   f"images; train/ has {', '.join(classes)})")
        for label, name in enumerate(classes):
            files, bad = _files_of(folder / name, real_root) if (folder / name).is_dir() else ([], [])
            problems += bad
            if split == "train" and not files:
                empty.append(str(folder / name))
            for path in files:
                info = path.stat()
                relative = str(path.relative_to(base))
                identity.update(f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
                entries.append(ImageEntry(split, label, relative, path.read_bytes))
    if problems:
        raise _problems(field, ("file cannot be read as an image of this data set", "files cannot be read as images of this data set"), problems)
    if len(entries) > LIMITS["dataset_images"]:
        raise SpecError(field, f"{base} holds {len(entries)} images; at most {LIMITS['dataset_images']} in one data set")
    if empty:
        raise _problems(field, (f"class folder has no images ({', '.join(IMAGE_SUFFIXES)})",
                                     f"class folders have no images ({', '.join(IMAGE_SUFFIXES)})"), empty)
    return ImageSet(entries, classes, f"folder:{identity.hexdigest()}", field, str(base))


def packed_set(path: Path, sha256: str, field: str) -> ImageSet:
    """A packed set (the SDK's deterministic tar) from the store, its members checked before use."""
    try:
        tar = tarfile.open(path, "r:")
    except (tarfile.TarError, OSError) as exc:
        raise SpecError(field, f"the packed data set {sha256[:12]}... is not a tar archive: {exc}") from exc
    with tar:
        members = tar.getmembers()
    if len(members) > LIMITS["dataset_images"] + 1:
        raise SpecError(field, f"the packed data set holds {len(members)} files; at most {LIMITS['dataset_images']}")
    manifest = next((m for m in members if m.name == MANIFEST), None)
    if manifest is None or not manifest.isfile():
        raise SpecError(field, f"the packed data set {sha256[:12]}... has no {MANIFEST}: pack it with the SDK")
    with open(path, "rb") as fh:
        fh.seek(manifest.offset_data)
        try:
            body = json.loads(fh.read(manifest.size))
        except ValueError as exc:
            raise SpecError(field, f"{MANIFEST} is not JSON: {exc}") from exc
    names = body.get("classNames") if isinstance(body, dict) else None
    if body.get("format") != MANIFEST_FORMAT or not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
        raise SpecError(field, f"{MANIFEST} must be {{\"format\": \"{MANIFEST_FORMAT}\", \"classNames\": [...]}}")
    folders = {f"{i:05d}": i for i in range(len(names))}
    entries, problems = [], []
    for m in members:
        if m.name == MANIFEST:
            continue
        parts = m.name.split("/")
        if not m.isfile() or len(parts) != 3 or parts[0] not in SPLITS or parts[1] not in folders or parts[2] in ("", ".", ".."):
            problems.append(f"{m.name} is not <split>/<class index>/<file> as the SDK packs it")
            continue
        entries.append(ImageEntry(parts[0], folders[parts[1]], m.name, _tar_reader(path, m.offset_data, m.size)))
    if problems:
        raise _problems(field, ("member of the packed data set is not an image of it", "members of the packed data set are not images of it"), problems)
    empty = [n for i, n in enumerate(names) if not any(e.split == "train" and e.label == i for e in entries)]
    if empty:
        raise _problems(field, ("class has no training images", "classes have no training images"), empty)
    return ImageSet(entries, list(names), f"packed:{sha256}", field, f"the packed data set {sha256[:12]}...")


def _tar_reader(path: Path, offset: int, size: int) -> Callable[[], bytes]:
    def read() -> bytes:
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.pread(fd, size, offset)  # thread-safe: no shared file position
        finally:
            os.close(fd)

    return read


def _decode_one(entry: ImageEntry, spec: DecodeSpec) -> np.ndarray:
    from PIL import Image  # noqa: PLC0415 - only image data sets need Pillow

    with Image.open(io.BytesIO(entry.read())) as img:
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise ValueError(f"has {img.width}x{img.height} pixels, more than the {MAX_IMAGE_PIXELS} an image may have")
        img = img.convert("RGB" if spec.rgb else "L")
        if spec.size and spec.mode == "shorter_side":
            scale = spec.size / min(img.width, img.height)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
            left, top = int(round((img.width - spec.size) / 2.0)), int(round((img.height - spec.size) / 2.0))
            img = img.crop((left, top, left + spec.size, top + spec.size))
        elif spec.size:
            img = img.resize((spec.size, spec.size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    return arr.transpose(2, 0, 1) if spec.rgb else arr[None]


def _decode_all(images: ImageSet, spec: DecodeSpec, threads: int, skip_bad: bool,
                progress: Callable[[int, int], None]) -> tuple[list[tuple[ImageEntry, np.ndarray]], list[str]]:
    from PIL import UnidentifiedImageError  # noqa: PLC0415

    stop = threading.Event()

    def work(entry: ImageEntry):
        if stop.is_set():
            return entry, None, "not decoded (cancelled)"
        try:
            return entry, _decode_one(entry, spec), None
        except UnidentifiedImageError:
            return entry, None, "not an image Pillow can decode"
        except (OSError, SyntaxError, ValueError) as exc:
            return entry, None, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__

    decoded, bad = [], []
    total = len(images.entries)
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="afa-decode") as pool:
        try:
            for done, (entry, array, problem) in enumerate(pool.map(work, images.entries), start=1):
                check_cancelled("decoding the data set's images")
                if problem is None:
                    decoded.append((entry, array))
                else:
                    bad.append(f"{entry.name}: {problem}")
                progress(done, total)
        finally:
            stop.set()
    if bad and not skip_bad:
        raise _problems(images.field, ("image does not decode (skip_bad_files skips it)", "images do not decode (skip_bad_files skips them)"),
                             bad, images.where)
    return decoded, bad


def _stack(decoded: list[tuple[ImageEntry, np.ndarray]], field: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    shapes = sorted({a.shape for _, a in decoded})
    if len(shapes) > 1:
        raise SpecError(field, f"the images differ in size {shapes[:3]}: set image_size to resize them to one")
    out = {}
    for split in SPLITS:
        rows = [(e, a) for e, a in decoded if e.split == split]
        if rows:
            out[split] = (np.stack([a for _, a in rows]), np.asarray([e.label for e, _ in rows], np.int64))
    return out


def _cache_root() -> Path:
    from afa_worker.weight_store import default_cache_dir  # noqa: PLC0415

    return default_cache_dir() / "decoded"


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def _evict_decoded(root: Path, keep: Path, budget: int) -> None:
    """Removes the least recently used decoded sets (meta.json's time) until the cache fits ``budget``."""
    sets = []
    for folder in root.iterdir():
        meta = folder / "meta.json"
        if folder.name.startswith(".") or folder == keep or folder.is_symlink() or not meta.is_file():
            continue
        sets.append((meta.stat().st_mtime, folder, _folder_bytes(folder)))
    total = sum(b for _, _, b in sets) + (_folder_bytes(keep) if keep.is_dir() else 0)
    for _, folder, size in sorted(sets):
        if total <= budget:
            break
        shutil.rmtree(folder, ignore_errors=True)
        total -= size


def _check_budget(images: ImageSet, spec: DecodeSpec) -> None:
    if spec.size:
        check_data_budget(images.field, len(images.entries), 3 if spec.rgb else 1, spec.size, spec.size, "images decoded")


def _load_cache(folder: Path) -> Decoded | None:
    meta = folder / "meta.json"
    if not meta.is_file():
        return None
    body = json.loads(meta.read_text())
    splits = {s: (np.load(folder / f"{s}_x.npy", mmap_mode="r"), np.load(folder / f"{s}_y.npy")) for s in body["splits"]}
    os.utime(meta)  # recently used
    return Decoded(splits, body["class_names"], body["skipped"], cache_hit=True)


def _save_cache(folder: Path, decoded: Decoded) -> None:
    """Written to a fresh temporary folder and renamed into place whole; a concurrent writer's copy wins."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for split, (x, y) in decoded.splits.items():
            np.save(tmp / f"{split}_x.npy", x)
            np.save(tmp / f"{split}_y.npy", y)
        (tmp / "meta.json").write_text(json.dumps({"splits": list(decoded.splits), "class_names": decoded.class_names,
                                                   "skipped": decoded.skipped}))
        try:
            os.rename(tmp, folder)
        except OSError:
            pass  # another worker of this node cached it first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _evict_decoded(folder.parent, folder, int(float(os.environ.get("AFA_DECODED_CACHE_GB", "50")) * (1 << 30)))


def decode(images: ImageSet, spec: DecodeSpec, threads: int, skip_bad: bool,
           progress: Callable[[int, int, str], None] = lambda *_: None) -> Decoded:
    """The set's images decoded, from the node's cache when it has them (then memory-mapped)."""
    started = time.perf_counter()
    key = hashlib.sha256(f"{images.identity}|{spec.key()}|skip={skip_bad}".encode()).hexdigest()[:32]
    folder = _cache_root() / key
    cached = _load_cache(folder)
    if cached is not None:
        progress(len(images.entries), len(images.entries), f"cache hit: {folder}")
        cached.seconds = time.perf_counter() - started
        return cached
    _check_budget(images, spec)
    pairs, bad = _decode_all(images, spec, threads, skip_bad, lambda done, total: progress(done, total, ""))
    if not pairs:
        raise SpecError(images.field, "no image of the data set decodes")
    decoded = Decoded(_stack(pairs, images.field), images.class_names, bad)
    _save_cache(folder, decoded)
    out = _load_cache(folder) or decoded  # memory-mapped, as every later session of the node reads it
    out.cache_hit, out.seconds = False, time.perf_counter() - started
    return out
