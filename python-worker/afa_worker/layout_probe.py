"""The layout probe's throwaway process (see afa_worker.layout): builds the model from its recipe,
runs two forward/backward passes in channels-last at the given input shape and precision, and
exits 0. A kernel fault kills this process, not the worker. argv[1]: the job as JSON."""

from __future__ import annotations

import json
import sys

import torch

from afa_worker.backbones import build_backbone


def main() -> int:
    job = json.loads(sys.argv[1])
    recipe, (c, h, w), bf16 = job["recipe"], job["input_shape"], job["bf16"]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_backbone(recipe["name"], recipe["num_classes"], recipe["in_channels"], recipe["width"], recipe["depth"])
    model = model.to(memory_format=torch.channels_last).train()
    x = torch.randn(2, c, h, w).contiguous(memory_format=torch.channels_last)
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        out.float().sum().backward()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
