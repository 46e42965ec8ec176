"""The worker's content-addressed stores: weight files (``weights/``, what PutWeights uploads,
SaveCheckpoint(to_weight_store) and ExportOnnx write, GetWeights serves, CreateSession and
LoadModel load by hash) and packed data sets (``datasets/``, PutDataset). A worker on another
machine thus needs nothing from the SDK's disk, and every node trains from exactly the bytes the
SDK holds: a file is kept only when its bytes hash to its name.

They live on the worker's own disk, under $AFA_CACHE (else $AFA_HOME/cache, else
~/.cache/afa-transfer/cache), so the workers of one node share them. What a shared store needs:

- one upload of a file per node: an upload holds an exclusive lock (flock, released by the kernel if
  its process dies) on ``.<sha>.lock``; a second upload of the same bytes is answered at once as in
  progress and the client waits until the file is present;
- nothing half-written: uploads go to a fresh temporary file, renamed into place when whole;
- a bound: uploads reserve their size against the store's budget before the first byte is written,
  and the least recently used files go first;
- files that stay what their name says: a file whose size or modification time changed since it was
  verified is hashed again when it is next used, removed if it no longer matches (and repaired by
  the next upload of the right bytes)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from afa_worker.errors import NotFoundError, SpecError
from afa_worker.limits import check_max

__all__ = ["ContentStore", "WeightStore", "DatasetStore", "default_store_dir", "default_cache_dir", "CHUNK_BYTES", "file_sha256",
           "StoreFull", "check_sha256"]

#: Data per chunk: well under the 16 MiB message limit.
CHUNK_BYTES = 4 << 20
#: Bytes each store keeps before evicting its least recently used files ($AFA_WEIGHT_STORE_GB, $AFA_DATASET_STORE_GB).
DEFAULT_MAX_BYTES = 20 << 30
_SHA256 = re.compile(r"[0-9a-f]{64}")


class StoreFull(RuntimeError):
    """An upload does not fit the store's budget even after evicting everything evictable (RESOURCE_EXHAUSTED)."""


def default_cache_dir() -> Path:
    cache = os.environ.get("AFA_CACHE")
    if not cache:
        home = os.environ.get("AFA_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                                          "afa-transfer")
        cache = os.path.join(home, "cache")
    return Path(cache).expanduser()


def default_store_dir() -> Path:
    return default_cache_dir() / "weights"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(value: str, field: str) -> str:
    if not _SHA256.fullmatch(value):
        raise SpecError(field, f"must be a sha256 in lower-case hex (64 characters), got {value[:80]!r}")
    return value


class ContentStore:
    """Files named by their sha256 under ``root``, with ``suffix``; bounded by ``max_bytes``."""

    #: The LIMITS entry bounding one file, the field names errors use, and the budget's environment variable.
    limit = "weights_bytes"
    budget_env = "AFA_WEIGHT_STORE_GB"

    def __init__(self, root: Path | None = None, max_bytes: int | None = None, suffix: str = ".safetensors") -> None:
        self.root = root or default_store_dir()
        if max_bytes is None:
            max_bytes = int(float(os.environ.get(self.budget_env, DEFAULT_MAX_BYTES / (1 << 30))) * (1 << 30))
        self.max_bytes = max_bytes
        self.suffix = suffix
        #: Bytes reserved by uploads in progress in this process (their temporary files count against the budget).
        self._reserved = 0
        self._guard = threading.Lock()

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}{self.suffix}"

    def _stamp(self, sha256: str) -> Path:
        return self.root / f".{sha256}.verified"

    def size(self, sha256: str) -> int | None:
        """Bytes of the stored file, or None when the store lacks it."""
        try:
            return self.path(check_sha256(sha256, "sha256")).stat().st_size
        except FileNotFoundError:
            return None

    def uploading(self, sha256: str) -> bool:
        """Whether an upload of these bytes holds the node's lock now (another worker or client)."""
        try:
            with self._lock(check_sha256(sha256, "sha256"), wait=False):
                return False
        except BlockingIOError:
            return True

    @contextmanager
    def _lock(self, sha256: str, wait: bool):
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / f".{sha256}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            yield
        finally:
            os.close(fd)  # releases the lock

    def _verified(self, sha256: str) -> bool:
        """The file matches its name: checked by hashing when it changed since it was last verified."""
        path = self.path(sha256)
        info = path.stat()
        mark = [info.st_size, info.st_mtime_ns]
        try:
            if json.loads(self._stamp(sha256).read_text()) == mark:
                return True
        except (OSError, ValueError):
            pass
        if file_sha256(path) != sha256:
            return False
        self._stamp(sha256).write_text(json.dumps(mark))
        return True

    def require(self, sha256: str, field: str) -> Path:
        """The stored file, verified and touched as recently used; NotFoundError when absent or altered."""
        path = self.path(check_sha256(sha256, field))
        try:
            ok = self._verified(sha256)
        except FileNotFoundError:
            raise NotFoundError(f"{field}: this worker's store ({self.root}) has no file {sha256[:12]}...; upload it first") from None
        if not ok:
            path.unlink(missing_ok=True)
            raise NotFoundError(f"{field}: the stored file {sha256[:12]}... was altered on this worker's disk (its bytes no longer "
                                "hash to its name); it was removed: upload it again")
        os.utime(path)
        self._stamp(sha256).write_text(json.dumps([path.stat().st_size, path.stat().st_mtime_ns]))
        return path

    @contextmanager
    def _reservation(self, total: int, keep: str):
        """Room for an upload of ``total`` bytes, made by evicting the least recently used files."""
        with self._guard:
            self._evict(keep, extra=self._reserved + total)
            if self._used() + self._reserved + total > self.max_bytes:
                raise StoreFull(f"an upload of {total} bytes does not fit this worker's store ({self.root}, {self.max_bytes} "
                                f"bytes, {self._reserved} reserved by uploads in progress; set ${self.budget_env})")
            self._reserved += total
        try:
            yield
        finally:
            with self._guard:
                self._reserved -= total

    def put(self, chunks: Iterable[tuple[str, int, bytes]]) -> tuple[str, int, bool, bool]:
        """Stores an upload: (sha256, total_bytes, data) per chunk, the first naming the file.
        Returns (sha256, bytes, already_present, in_progress)."""
        iterator = iter(chunks)
        try:
            sha256, total, data = next(iterator)
        except StopIteration:
            raise SpecError("sha256", "an upload needs at least one chunk, the first naming sha256 and total_bytes") from None
        check_sha256(sha256, "sha256")
        check_max(total, "total_bytes", self.limit)
        try:
            with self._lock(sha256, wait=False):
                return self._receive(sha256, total, data, iterator)
        except BlockingIOError:
            return sha256, total, False, True  # another upload of these bytes holds the node's lock

    def _receive(self, sha256: str, total: int, first: bytes, rest: Iterator[tuple[str, int, bytes]]) -> tuple[str, int, bool, bool]:
        present = self.size(sha256) == total and self._verified(sha256)  # a damaged copy is repaired, not kept
        with (self._reservation(0 if present else total, sha256)):
            fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=f".{sha256[:16]}.", suffix=".upload")
            tmp = Path(tmp_name)
            try:
                digest, received = hashlib.sha256(), 0
                with os.fdopen(fd, "wb") as fh:
                    for index, (_, _, piece) in enumerate(_chain_first(first, rest)):
                        if len(piece) > CHUNK_BYTES:
                            raise SpecError("data", f"chunk {index} holds {len(piece)} bytes; at most {CHUNK_BYTES} per chunk")
                        received += len(piece)
                        if received > total:
                            raise SpecError("total_bytes", f"the upload sent more than the {total} bytes it announced")
                        digest.update(piece)
                        if not present:
                            fh.write(piece)
                    fh.flush()
                    os.fsync(fh.fileno())
                if received != total:
                    raise SpecError("total_bytes", f"the upload announced {total} bytes and sent {received}")
                if digest.hexdigest() != sha256:
                    raise SpecError("sha256", f"the uploaded bytes hash to {digest.hexdigest()}, not {sha256}: the file "
                                              "changed or was damaged in transit")
                if present:
                    os.utime(self.path(sha256))
                else:
                    os.replace(tmp, self.path(sha256))
                    self._stamp(sha256).write_text(json.dumps([total, self.path(sha256).stat().st_mtime_ns]))
                    self._evict(keep=sha256)
                return sha256, total, present, False
            finally:
                tmp.unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> tuple[str, Path]:
        """Stores bytes this worker made (a checkpoint, an ONNX export): written to a fresh temporary
        file in the store, then adopted (and the store kept within its bound). Returns (sha256, path)."""
        digest = hashlib.sha256(data).hexdigest()
        if self.size(digest) == len(data):
            os.utime(self.path(digest))
            return digest, self.path(digest)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=f".{digest[:16]}.", suffix=".upload")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            return digest, self.adopt(tmp, digest)
        finally:
            tmp.unlink(missing_ok=True)

    def adopt(self, source: Path, sha256: str) -> Path:
        """Moves a file this worker just wrote (its hash known) into the store."""
        target = self.path(check_sha256(sha256, "sha256"))
        self.root.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        self._stamp(sha256).write_text(json.dumps([target.stat().st_size, target.stat().st_mtime_ns]))
        self._evict(keep=sha256)
        return target

    def read(self, sha256: str) -> Iterator[bytes]:
        path = self.require(sha256, "sha256")
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK_BYTES):
                yield block

    def _files(self) -> list[Path]:
        return list(self.root.glob(f"*{self.suffix}")) if self.root.is_dir() else []

    def _used(self) -> int:
        return sum(p.stat().st_size for p in self._files() if p.exists())

    def _evict(self, keep: str, extra: int = 0) -> None:
        files = sorted((p for p in self._files() if p.name != f"{keep}{self.suffix}"), key=lambda p: p.stat().st_mtime)
        total = self._used() + extra
        for old in files:
            if total <= self.max_bytes:
                break
            total -= old.stat().st_size
            old.unlink(missing_ok=True)
            self._stamp(old.name[:64]).unlink(missing_ok=True)


class WeightStore(ContentStore):
    """Weight files (safetensors; ONNX exports share it), `weights/` under the cache."""


class DatasetStore(ContentStore):
    """Packed data sets (tar), `datasets/` under the cache."""

    limit = "dataset_bytes"
    budget_env = "AFA_DATASET_STORE_GB"

    def __init__(self, root: Path | None = None, max_bytes: int | None = None) -> None:
        super().__init__(root or default_cache_dir() / "datasets", max_bytes, suffix=".tar")


def _chain_first(first: bytes, rest: Iterator[tuple[str, int, bytes]]) -> Iterator[tuple[str, int, bytes]]:
    yield "", 0, first
    yield from rest
