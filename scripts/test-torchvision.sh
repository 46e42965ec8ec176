#!/usr/bin/env bash
# torchvision and timm backbones, tested where they import. Against this machine's CPU torch 2.13
# torchvision does not import; against the wheel mirror's CUDA build of torch 2.14.1 (which runs on
# the CPU) both do. This builds that venv once (~4.6 GB, about a minute: torch, torchvision and timm
# without their pins, then the CUDA wheels torch loads at import and the small pure-Python
# dependencies), then runs python-worker/tests/test_torchvision.py in it. Kept out of `make test`,
# which needs neither.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=python-worker/.venv-torchvision
stamp=$venv/.afa-installed
if [ ! -f "$stamp" ]; then
  python3 -m venv "$venv"
  pip="$venv/bin/python -m pip install --quiet"
  # --no-deps: torch 2.14.1 pins cuda-bindings and triton, which the mirror does not hold and a CPU run never loads
  $pip --no-deps torch==2.14.1 torchvision==0.29.1 timm
  $pip "cuda-toolkit[cublas,cudart,cufft,cufile,cupti,curand,cusolver,cusparse,nvjitlink,nvrtc,nvtx]==13.0.3" \
    nvidia-cudnn-cu13==9.24.0.43 nvidia-cusparselt-cu13==0.8.1 nvidia-nccl-cu13==2.30.7 nvidia-nvshmem-cu13==3.4.5
  $pip filelock typing-extensions sympy networkx jinja2 fsspec numpy pillow pyyaml huggingface_hub safetensors \
    grpcio protobuf googleapis-common-protos pytest
  "$venv/bin/python" -c "import torch, torchvision, timm"
  touch "$stamp"
fi
cd python-worker
PYTHONPATH=. exec .venv-torchvision/bin/python -m pytest -q -p no:cacheprovider tests/test_torchvision.py "$@"
