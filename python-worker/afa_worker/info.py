"""What GetInfo reports: versions, devices, CPU threads and the choices this worker knows."""

from __future__ import annotations

import os
import platform
import sys

import torch

from afa_worker import PROTOCOL_VERSION, __version__
from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.backbones import backbone_names
from afa_worker.data import DATASETS
from afa_worker.regularizers import REGULARIZERS

__all__ = ["worker_info"]


def _devices() -> list[pb.DeviceInfo]:
    devices = [pb.DeviceInfo(kind="cpu", index=0, name=platform.processor() or platform.machine(), memory_bytes=_ram())]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(pb.DeviceInfo(kind="cuda", index=i, name=props.name, memory_bytes=props.total_memory))
    return devices


def _ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def worker_info(active_sessions: int) -> pb.WorkerInfo:
    return pb.WorkerInfo(
        worker_version=__version__, protocol_version=PROTOCOL_VERSION, python_version=platform.python_version(),
        torch_version=torch.__version__, cuda_available=torch.cuda.is_available(), devices=_devices(),
        cpu_threads=torch.get_num_threads(), backbones=backbone_names(), datasets=list(DATASETS),
        regularizers=list(REGULARIZERS), active_sessions=active_sessions, pid=os.getpid(),
        cuda_version=torch.version.cuda or "", python_executable=sys.executable)
