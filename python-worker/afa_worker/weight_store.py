"""The worker's store of weight files, named by their sha256: what PutWeights uploads, what
SaveCheckpoint(to_weight_store) writes and GetWeights serves, and what CreateSession loads by hash.
A worker on another machine thus needs nothing from the SDK's disk, and every node trains from
exactly the bytes the SDK holds: a file is kept only when its bytes hash to its name.

It lives on the worker's own disk, under $AFA_CACHE (else $AFA_HOME/cache, else
~/.cache/afa-transfer/cache) in ``weights/``, so workers of one node share it. Uploads go to a fresh
temporary file and are renamed into place, so two uploads of one file cannot tear it; the store
is bounded (least recently used files go first)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from afa_worker.errors import NotFoundError, SpecError
from afa_worker.limits import check_max

__all__ = ["WeightStore", "default_store_dir", "CHUNK_BYTES", "file_sha256"]

#: Data per WeightsChunk: well under the 16 MiB message limit.
CHUNK_BYTES = 4 << 20
#: Bytes the store keeps before evicting its least recently used files ($AFA_WEIGHT_STORE_GB).
DEFAULT_MAX_BYTES = 20 << 30
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def default_store_dir() -> Path:
    cache = os.environ.get("AFA_CACHE")
    if not cache:
        home = os.environ.get("AFA_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                                          "afa-transfer")
        cache = os.path.join(home, "cache")
    return Path(cache).expanduser() / "weights"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(value: str, field: str) -> str:
    if not _SHA256.match(value):
        raise SpecError(field, f"must be a sha256 in lower-case hex (64 characters), got {value[:80]!r}")
    return value


class WeightStore:
    def __init__(self, root: Path | None = None, max_bytes: int | None = None) -> None:
        self.root = root or default_store_dir()
        if max_bytes is None:
            max_bytes = int(float(os.environ.get("AFA_WEIGHT_STORE_GB", DEFAULT_MAX_BYTES / (1 << 30))) * (1 << 30))
        self.max_bytes = max_bytes

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.safetensors"

    def size(self, sha256: str) -> int | None:
        """Bytes of the stored file, or None when the store lacks it."""
        try:
            return self.path(check_sha256(sha256, "sha256")).stat().st_size
        except FileNotFoundError:
            return None

    def require(self, sha256: str, field: str) -> Path:
        """The stored file, touched as recently used; NotFoundError when absent."""
        path = self.path(check_sha256(sha256, field))
        try:
            os.utime(path)
        except FileNotFoundError:
            raise NotFoundError(f"{field}: this worker's weight store ({self.root}) has no file {sha256[:12]}...; "
                                "upload it first (PutWeights)") from None
        return path

    def put(self, chunks: Iterable[tuple[str, int, bytes]]) -> tuple[str, int, bool]:
        """Stores an upload: (sha256, total_bytes, data) per chunk, the first naming the file.
        Returns (sha256, bytes, already_present)."""
        iterator = iter(chunks)
        try:
            sha256, total, data = next(iterator)
        except StopIteration:
            raise SpecError("sha256", "an upload needs at least one chunk, the first naming sha256 and total_bytes") from None
        check_sha256(sha256, "sha256")
        check_max(total, "total_bytes", "weights_bytes")
        present = self.size(sha256) == total
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=f".{sha256[:16]}.", suffix=".upload")
        tmp = Path(tmp_name)
        try:
            digest, received = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as fh:
                for index, (_, _, piece) in enumerate(_chain_first(data, iterator)):
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
                self._evict(keep=sha256)
            return sha256, total, present
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> tuple[str, Path]:
        """Stores bytes this worker made (a checkpoint): written to a fresh temporary file in the store,
        then adopted (and the store kept within its bound). Returns (sha256, path)."""
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
        self._evict(keep=sha256)
        return target

    def read(self, sha256: str) -> Iterator[bytes]:
        path = self.require(sha256, "sha256")
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK_BYTES):
                yield block

    def _evict(self, keep: str) -> None:
        files = sorted((p for p in self.root.glob("*.safetensors") if p.stem != keep), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in self.root.glob("*.safetensors"))
        for old in files:
            if total <= self.max_bytes:
                break
            total -= old.stat().st_size
            old.unlink(missing_ok=True)


def _chain_first(first: bytes, rest: Iterator[tuple[str, int, bytes]]) -> Iterator[tuple[str, int, bytes]]:
    yield "", 0, first
    yield from rest
