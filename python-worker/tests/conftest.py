from __future__ import annotations

import os
import tempfile

import grpc
import pytest

from afa_worker._gen.afa.v1 import afa_pb2_grpc as pbgrpc
from afa_worker._gen.grpc.health.v1 import health_pb2_grpc as hgrpc
from afa_worker.auth import authorized_channel
from afa_worker.runtime import configure_torch
from afa_worker.server import ServerOptions, WorkerServer

configure_torch(threads=1)
# The suite's own cache (decoded data sets, stores): never the user's ~/.cache/afa-transfer.
os.environ.setdefault("AFA_CACHE", tempfile.mkdtemp(prefix="afa-pytest-cache-"))


@pytest.fixture
def server(tmp_path_factory):
    # tests save checkpoints under pytest's temporary folders, as the SDK's own local worker may
    store = tmp_path_factory.mktemp("weight-store")
    srv = WorkerServer(ServerOptions(port=0, grace_seconds=1.0, allow_write_anywhere=True, weight_store_dir=str(store)))
    srv.start()
    yield srv
    srv.shutdown()


@pytest.fixture
def channel(server):
    with authorized_channel(f"127.0.0.1:{server.port}", server.options.token) as ch:
        yield ch


@pytest.fixture
def stub(channel):
    return pbgrpc.AfaWorkerStub(channel)


@pytest.fixture
def health_stub(channel):
    return hgrpc.HealthStub(channel)
