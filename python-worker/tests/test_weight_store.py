"""Weights over the contract: uploads kept only when their bytes hash to their name, sessions that
load their source by hash, a source saved into the store and downloaded back byte for byte."""

from __future__ import annotations

import hashlib
import os
import time

import grpc
import pytest

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker._gen.afa.v1 import afa_pb2_grpc as pbgrpc
from afa_worker.errors import SpecError
from afa_worker.limits import LIMITS
from afa_worker.weight_store import CHUNK_BYTES, WeightStore

WIDTH = 4


def _data() -> pb.DataSpec:
    return pb.DataSpec(fashion_mnist=pb.FashionMnistData(), classes=[0, 1], labels_per_class=4, val_per_class=2,
                       test_per_class=2)


def _session(stub, **source) -> pb.CreateSessionResponse:
    return stub.CreateSession(pb.CreateSessionRequest(backbone=pb.BackboneSpec(name="small_resnet", width=WIDTH),
                                                      data=_data(), seed=0, **source))


def _chunks(data: bytes, sha256: str, total: int | None = None, size: int = 1 << 16):
    pieces = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    for index, piece in enumerate(pieces):
        yield pb.WeightsChunk(sha256=sha256 if index == 0 else "", total_bytes=(len(data) if total is None else total)
                              if index == 0 else 0, data=piece)


@pytest.fixture
def checkpoint_bytes(stub) -> tuple[bytes, str]:
    """A real weights file: a fresh session's target saved into the store, then downloaded."""
    created = _session(stub)
    saved = stub.SaveCheckpoint(pb.SaveCheckpointRequest(session_id=created.session_id, to_weight_store=True))
    stub.CloseSession(pb.CloseSessionRequest(session_id=created.session_id))
    data = b"".join(c.data for c in stub.GetWeights(pb.GetWeightsRequest(sha256=saved.sha256)))
    return data, saved.sha256


def test_a_saved_source_downloads_byte_for_byte_and_hashes_to_its_name(stub, server, checkpoint_bytes):
    data, sha256 = checkpoint_bytes
    assert hashlib.sha256(data).hexdigest() == sha256
    assert len(data) > 1000
    assert (server.servicer._store.root / f"{sha256}.safetensors").read_bytes() == data


def test_an_upload_is_stored_and_a_session_loads_it_by_hash(stub, checkpoint_bytes, tmp_path):
    data, sha256 = checkpoint_bytes
    # Into a second worker's empty store, as onto another node.
    from afa_worker.auth import authorized_channel
    from afa_worker.server import ServerOptions, WorkerServer

    other = WorkerServer(ServerOptions(port=0, grace_seconds=0.5, weight_store_dir=str(tmp_path / "store")))
    other.start()
    try:
        with authorized_channel(f"127.0.0.1:{other.port}", other.options.token) as channel:
            remote = pbgrpc.AfaWorkerStub(channel)
            assert not remote.HasWeights(pb.HasWeightsRequest(sha256=sha256)).present
            put = remote.PutWeights(_chunks(data, sha256, size=1000))
            assert (put.sha256, put.bytes, put.already_present) == (sha256, len(data), False)
            has = remote.HasWeights(pb.HasWeightsRequest(sha256=sha256))
            assert has.present and has.bytes == len(data)
            assert remote.PutWeights(_chunks(data, sha256)).already_present
            created = _session(remote, source_weights_sha256=sha256)
            assert created.has_source and created.source_sha256 == sha256
            # The same bytes by path give the same hash.
            path = tmp_path / "by-path.safetensors"
            path.write_bytes(data)
            assert _session(remote, source_weights=str(path)).source_sha256 == sha256
    finally:
        other.shutdown()


@pytest.mark.parametrize("case", ["wrong hash", "short", "long", "oversized chunk", "over the limit", "bad sha"])
def test_a_bad_upload_is_refused_naming_the_field_and_nothing_is_kept(stub, server, checkpoint_bytes, case):
    data, sha256 = checkpoint_bytes
    store = server.servicer._store.root
    kept = lambda: sorted(p.name for p in store.iterdir() if not p.name.startswith("."))  # noqa: E731 - locks and stamps aside
    before = kept()
    chunks, field = {
        "wrong hash": (_chunks(data[:-1] + b"x", sha256), "sha256"),
        "short": (_chunks(data, sha256, total=len(data) + 10), "total_bytes"),
        "long": (_chunks(data, sha256, total=len(data) - 10), "total_bytes"),
        "oversized chunk": (_chunks(data + b"\0" * CHUNK_BYTES, sha256, size=CHUNK_BYTES + 1), "data"),
        "over the limit": (_chunks(data, sha256, total=LIMITS["weights_bytes"] + 1), "total_bytes"),
        "bad sha": (_chunks(data, sha256.upper()), "sha256"),
    }[case]
    (store / f"{sha256}.safetensors").unlink()
    with pytest.raises(grpc.RpcError) as err:
        stub.PutWeights(chunks)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}: ")
    assert kept() == [n for n in before if n != f"{sha256}.safetensors"]
    assert not list(store.glob("*.upload"))  # nothing half-written left
    assert stub.GetInfo(pb.GetInfoRequest()).protocol_version  # still serving


def test_a_session_from_an_unknown_hash_is_not_found_naming_the_field(stub):
    with pytest.raises(grpc.RpcError) as err:
        _session(stub, source_weights_sha256="0" * 64)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details().startswith("source_weights_sha256: ")
    with pytest.raises(grpc.RpcError) as err:
        _session(stub, source_weights_sha256="nothex")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        list(stub.GetWeights(pb.GetWeightsRequest(sha256="1" * 64)))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_upload_without_the_token_is_refused(server, checkpoint_bytes):
    data, sha256 = checkpoint_bytes
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.RpcError) as err:
            pbgrpc.AfaWorkerStub(channel).PutWeights(_chunks(data, sha256))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_store_evicts_its_least_recently_used_files_past_its_bound(tmp_path):
    store = WeightStore(tmp_path, max_bytes=250)
    names = []
    for i in range(3):
        data = bytes([i]) * 100
        sha = hashlib.sha256(data).hexdigest()
        store.put([(sha, len(data), data)])
        past = time.time() - 100 + i
        os.utime(store.path(sha), (past, past))
        names.append(sha)
    # 300 bytes > 250: the oldest went when the third arrived.
    assert [store.size(n) for n in names] == [None, 100, 100]
    store.require(names[1], "sha256")  # now the most recently used
    data = b"\x09" * 100
    store.put([(hashlib.sha256(data).hexdigest(), 100, data)])
    assert store.size(names[1]) == 100 and store.size(names[2]) is None
    with pytest.raises(SpecError):
        store.size("short")
