"""The GPU benchmark only runs where a GPU is lent; its --smoke mode runs every code path here on
the CPU, so a change to the worker that breaks the script fails the suite instead of a GPU session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "python" / "gpu_bench.py"


def test_gpu_bench_smoke_runs_every_method_at_both_precisions(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(out)], capture_output=True, text=True,
                          timeout=900)  # ~25 s alone; one generous bound for a loaded machine
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["arch"], r["precision"]) for r in rows] == [("resnet18", "fp32"), ("resnet18", "bf16")]
    for row in rows:
        assert row["plain_loop_images_per_s"] > 0
        for method in ("fine-tune", "afa-spatial", "afa-channel", "afa-channel+cache"):
            assert row[method]["images_per_s"] > 0 and row[method]["vs_plain_loop"] > 0
