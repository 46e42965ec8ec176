"""Image data sets, decoded once per node: the packed set from the data set store gives the same
arrays as the folder it was packed from; parallel decoding equals one thread; the decoded cache is
hit by the next session and missed after a file or the transform changes; every bad file is listed
in one error (or skipped); a link out of the root and a class train/ lacks are refused; the crop
transform; and the shared stores' hardening: one upload per node, a file altered on disk is found
out and repaired, an upload that does not fit is refused, a stalled upload is cancelled."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.batches import random_crop_flip
from afa_worker.data import DataContext, center_crop, load_data
from afa_worker.data.images import decode, folder_set
from afa_worker.errors import NotFoundError, SpecError
from afa_worker.weight_store import ContentStore, DatasetStore, StoreFull


def _tree(root: Path, counts=None, classes=("cat", "dog"), size=(12, 10)) -> Path:
    rng = np.random.default_rng(0)
    for split, per_class in (counts or {"train": 4, "test": 2}).items():
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = size[0] + i, size[1] + 2 * i  # mixed sizes and aspect ratios
                arr = (rng.random((h, w, 3)) * 80 + 120 * c).astype(np.uint8)
                Image.fromarray(arr).save(root / split / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def _pack(root: Path, classes: list[str]) -> bytes:
    """The SDK's packed form of a folder: sorted members, fixed metadata, a manifest."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))

        add("afa-dataset.json", json.dumps({"format": "afa-dataset/1", "classNames": classes}).encode())
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            split, cls, name = path.relative_to(root).parts
            add(f"{split}/{classes.index(cls):05d}/{name}", path.read_bytes())
    return out.getvalue()


def _spec(**kw) -> pb.DataSpec:
    return pb.DataSpec(image_size=16, color=pb.COLOR_MODE_RGB, **kw)


def test_a_packed_set_from_the_store_is_the_folder_it_was_packed_from(tmp_path):
    root = _tree(tmp_path / "folder")
    data = _pack(root, ["cat", "dog"])
    sha = hashlib.sha256(data).hexdigest()
    store = DatasetStore(tmp_path / "store")
    assert store.put([(sha, len(data), data)])[1:] == (len(data), False, False)
    from_folder = load_data(_spec(image_folder=pb.ImageFolderData(root=str(root))))
    ctx = DataContext(store, threads=2)
    packed = load_data(_spec(packed=pb.PackedData(sha256=sha)), ctx)
    assert ctx.sha256 == sha and packed.class_names == ["cat", "dog"]
    for split in ("train", "test"):
        assert torch.equal(getattr(packed, split).x, getattr(from_folder, split).x)
        assert torch.equal(getattr(packed, split).y, getattr(from_folder, split).y)
    with pytest.raises(NotFoundError):
        load_data(_spec(packed=pb.PackedData(sha256="0" * 64)), ctx)


def test_parallel_decoding_equals_one_thread_and_the_second_session_reads_the_cache(tmp_path):
    root = _tree(tmp_path / "f", {"train": 6})
    images = folder_set(str(root), "data.image_folder.root")
    from afa_worker.data.images import DecodeSpec

    spec = DecodeSpec(rgb=True, size=16)
    seen: list[tuple[int, int, str]] = []
    first = decode(images, spec, 4, False, lambda d, t, detail: seen.append((d, t, detail)))
    assert not first.cache_hit and seen[-1][:2] == (12, 12)
    again = decode(images, spec, 1, False)
    assert again.cache_hit and isinstance(again.splits["train"][0], np.memmap)  # mapped, not read into memory
    from afa_worker.data import images as module

    serial = module._stack(module._decode_all(images, spec, 1, False, lambda *_: None)[0], "f")
    assert np.array_equal(np.asarray(first.splits["train"][0]), serial["train"][0])
    # A changed file, or another transform, misses the cache.
    path = next((root / "train" / "cat").iterdir())
    time.sleep(0.01)
    path.write_bytes(path.read_bytes())
    assert not decode(folder_set(str(root), "f"), spec, 2, False).cache_hit
    assert not decode(images, DecodeSpec(rgb=False, size=16), 2, False).cache_hit


def test_the_decoded_cache_keeps_within_its_budget_least_recently_used_first(tmp_path, monkeypatch):
    from afa_worker.data.images import DecodeSpec, _cache_root

    monkeypatch.setenv("AFA_CACHE", str(tmp_path / "cache"))  # this test's sets only
    images = folder_set(str(_tree(tmp_path / "f", {"train": 2})), "f")
    sizes = (8, 12, 16)
    for size in sizes:
        decode(images, DecodeSpec(rgb=True, size=size), 1, False)
    folders = {size: next(p for p in _cache_root().iterdir() if np.load(p / "train_x.npy", mmap_mode="r").shape[-1] == size)
               for size in sizes}
    bytes_of = {size: sum(f.stat().st_size for f in folder.iterdir()) for size, folder in folders.items()}
    # Room for the newest two only: the next set (size 8 again) evicts the least recently used (12).
    decode(images, DecodeSpec(rgb=True, size=16), 1, False)  # a hit: 16 is now the most recently used
    monkeypatch.setenv("AFA_DECODED_CACHE_GB", str((bytes_of[8] + bytes_of[16] + 1) / (1 << 30)))
    shutil.rmtree(folders[8])
    assert not decode(images, DecodeSpec(rgb=True, size=8), 1, False).cache_hit
    assert [folders[s].exists() for s in sizes] == [True, False, True]


def test_every_bad_image_is_listed_in_one_error_or_skipped_and_counted(tmp_path):
    root = _tree(tmp_path / "f", {"train": 3})
    for i in range(3):
        (root / "train" / "cat" / f"bad{i}.png").write_bytes(b"not a png" if i else b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(SpecError) as err:
        load_data(_spec(image_folder=pb.ImageFolderData(root=str(root))))
    assert err.value.field == "data.image_folder.root"
    message = str(err.value)
    assert "3 images do not decode (skip_bad_files skips them) in " in message
    assert all(f"train/cat/bad{i}.png: " in message for i in range(3))
    ctx = DataContext(threads=2)
    data = load_data(_spec(image_folder=pb.ImageFolderData(root=str(root)), skip_bad_files=True), ctx)
    assert ctx.skipped == 3 and len(data.train) == 6


def test_a_link_out_of_the_root_and_a_class_train_lacks_are_refused_naming_them(tmp_path):
    root = _tree(tmp_path / "f")
    outside = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(outside)
    (root / "train" / "cat" / "link.png").symlink_to(outside)
    with pytest.raises(SpecError, match="link.png is a link out of the data set's root"):
        load_data(_spec(image_folder=pb.ImageFolderData(root=str(root))))
    (root / "train" / "cat" / "link.png").unlink()
    (root / "test" / "bird").mkdir()
    with pytest.raises(SpecError, match="has class folders train/ lacks: bird"):
        load_data(_spec(image_folder=pb.ImageFolderData(root=str(root))))


def test_the_crop_transform_random_crops_with_flips_for_training_center_crops_for_evaluation(tmp_path):
    root = _tree(tmp_path / "f", {"train": 4, "test": 2}, size=(20, 20))
    data = load_data(_spec(image_folder=pb.ImageFolderData(root=str(root)), crop=12))
    assert tuple(data.train.x.shape[-2:]) == (16, 16) and tuple(data.test.x.shape[-2:]) == (12, 12)
    assert (data.transform.height, data.transform.resize_height) == (12, 16)
    # Evaluation's center crop: rows and columns 2..13 of the 16x16 image.
    assert torch.equal(center_crop(data.train.x[:1], 12), data.train.x[:1, :, 2:14, 2:14])
    image = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16).expand(400, 1, 16, 16).contiguous()
    crops = random_crop_flip(image, 12, torch.Generator().manual_seed(0))
    assert tuple(crops.shape) == (400, 1, 12, 12)
    flipped = 0
    for crop in crops[:, 0]:
        top, left = int(crop.min()) // 16, int(crop.min()) % 16
        window = image[0, 0, top:top + 12, left:left + 12]  # every crop lies inside the image
        assert torch.equal(crop, window) or torch.equal(crop, window.flip(-1))
        flipped += int(not torch.equal(crop, window))
    assert 140 < flipped < 260  # about half the draws flip


def test_one_upload_per_node_an_altered_file_is_found_and_repaired(tmp_path):
    store = ContentStore(tmp_path)
    data = b"x" * 1000
    sha = hashlib.sha256(data).hexdigest()
    gate, release = threading.Event(), threading.Event()

    def slow():
        yield sha, len(data), data[:10]
        gate.set()
        release.wait(10)
        yield "", 0, data[10:]

    first = threading.Thread(target=lambda: store.put(slow()))
    first.start()
    gate.wait(10)
    assert store.uploading(sha)  # HasWeights says so: the second client waits
    assert store.put([(sha, len(data), data)])[3] is True  # in progress: nothing read, nothing written twice
    release.set()
    first.join()
    assert store.size(sha) == 1000 and not store.uploading(sha)
    with open(store.path(sha), "r+b") as fh:  # altered on disk, same size
        fh.write(b"y")
    with pytest.raises(NotFoundError, match="was altered on this worker's disk"):
        store.require(sha, "sha256")
    assert store.size(sha) is None  # removed
    assert store.put([(sha, len(data), data)])[2] is False  # the re-upload repairs it
    assert store.require(sha, "sha256").read_bytes() == data


def test_an_upload_that_does_not_fit_the_store_is_refused_before_a_byte_is_written(tmp_path):
    store = ContentStore(tmp_path, max_bytes=500)
    data = b"z" * 600
    with pytest.raises(StoreFull, match="does not fit"):
        store.put([(hashlib.sha256(data).hexdigest(), len(data), data)])
    assert not list(tmp_path.glob("*.upload")) and not list(tmp_path.glob("*.safetensors"))


def test_a_stalled_upload_is_cancelled_and_other_streams_are_not_starved(stub, server, monkeypatch):
    import afa_worker.servicer as servicer

    monkeypatch.setattr(servicer, "UPLOAD_IDLE_SECONDS", 0.5)
    stalled = threading.Event()

    def one_chunk_then_nothing():
        yield pb.WeightsChunk(sha256="a" * 64, total_bytes=10, data=b"12345")
        stalled.wait(30)

    errors = []
    thread = threading.Thread(target=lambda: errors.append(_call(lambda: stub.PutWeights(one_chunk_then_nothing()))))
    thread.start()
    thread.join(20)
    stalled.set()
    assert errors and errors[0] == grpc.StatusCode.CANCELLED  # the worker gave up on it
    # The handler's read fails once the call is cancelled: its temporary file goes, its thread is free.
    for _ in range(200):
        if not list(server.servicer._store.root.glob("*.upload")):
            break
        time.sleep(0.05)
    assert not list(server.servicer._store.root.glob("*.upload"))
    assert stub.GetInfo(pb.GetInfoRequest()).protocol_version


def _call(fn):
    try:
        fn()
        return None
    except grpc.RpcError as exc:
        return exc.code()
