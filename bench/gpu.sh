#!/usr/bin/env bash
# GPU figures (run only on a machine with CUDA; never required): ResNet-50 and ResNet-101 at
# 224x224, batch 64, fine-tune vs AFA, fp32 vs bf16, images/s, the fraction of the chip's bf16
# peak, and the ratio to a tuned plain PyTorch fine-tuning loop on the same chip in the same run.
#   bench/gpu.sh [--peak-tflops 989] [--steps 30]     (writes bench/out/gpu.json)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${AFA_PYTHON:-python3}
[ -x python-worker/.venv/bin/python ] && python=python-worker/.venv/bin/python
mkdir -p bench/out
exec "$python" bench/python/gpu_bench.py --json bench/out/gpu.json "$@"
