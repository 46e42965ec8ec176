"""DELTA's channel probe re-runs only the network after the ablated layer, and gets the same rises
as zeroing the channel with a hook and running the whole network (the reference's way)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from afa_worker.backbones import build_backbone, head_module
from afa_worker.phases import PhaseLog, recording
from afa_worker.regularizers import ablation
from afa_worker.regularizers.ablation import NotSplittable, SplitNetwork, suffix_rises
from afa_worker.regularizers.delta import channel_importance


def _whole_network_rises(model: nn.Module, layer: str, batches) -> torch.Tensor:
    """Written apart from the worker's loop: one forward of the whole model per channel, a hook
    zeroing it, CE averaged over the batches."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        base = torch.stack([F.cross_entropy(model(x), y) for x, y in batches]).mean()
        module = model.get_submodule(layer)
        channels = _out_channels(model, module, batches[0][0])
        zeroed = {"j": 0}
        module.register_forward_hook(lambda _m, _i, out: out.index_fill(1, torch.tensor([zeroed["j"]]), 0.0))
        rises = []
        for j in range(channels):
            zeroed["j"] = j
            rises.append(torch.stack([F.cross_entropy(model(x), y) for x, y in batches]).mean() - base)
    return torch.stack(rises).double()


def _out_channels(model: nn.Module, module: nn.Module, x: torch.Tensor) -> int:
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[1]))
    model(x)
    handle.remove()
    return seen[0]


def _batches(in_channels: int, size: int, classes: int, n: int = 2, batch: int = 4):
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(batch, in_channels, size, size, generator=gen), torch.randint(0, classes, (batch,), generator=gen))
            for _ in range(n)]


def _trained_bn(model: nn.Module, batches) -> nn.Module:
    """Batch-norm statistics off their initial values, so eval mode differs from identity scaling,
    and a head with unit-scale weights, so that one channel's ablation moves the CE well above
    float32's rounding (a freshly initialised MobileNetV2's head is 100x smaller)."""
    model.train()
    with torch.no_grad():
        head_module(model).weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(3))
        for x, _ in batches:
            model(x)
    return model.eval()


@pytest.mark.parametrize("backbone, layer, size", [
    ("small_resnet", "layer2.0.conv2", 28),   # inside a basic block: the identity crosses the cut
    ("resnet50", "layer1.2.conv3", 16),       # the paper's layer: bottleneck, before bn3 and the residual add
    ("resnet18", "layer4.1", 16),             # a whole block, near the head
    ("mobilenet_v2", "features.5.conv.2", 32),  # the paper's MobileNetV2 layer, an inverted residual
])
def test_suffix_rerun_equals_whole_network_ablation(backbone, layer, size):
    torch.manual_seed(0)
    in_channels = 1 if backbone == "small_resnet" else 3
    # In float64, so that equal means equal to rounding (float32 CE differences round at ~1e-6).
    model = build_backbone(backbone, 5, in_channels, width=8 if backbone == "small_resnet" else 0).double()
    batches = [(x.double(), y) for x, y in _batches(in_channels, size, 5, n=1, batch=2)]
    _trained_bn(model, batches)
    expected = _whole_network_rises(model, layer, batches)
    split = SplitNetwork(model, layer)
    base = torch.stack([F.cross_entropy(model(x), y) for x, y in batches]).mean().detach()
    seen = []
    got = suffix_rises(split, batches, base, seen.append, lambda j: None)
    assert sum(seen) == len(expected)
    assert expected.abs().max() > 1e-9  # the ablations matter (float64 rounds at 1e-15): a suffix that ignored the zeroing fails
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_grouped_channels_equal_one_at_a_time(monkeypatch):
    """The suffix runs several channels in one batch; groups of one give the same rises."""
    model = _trained_bn(build_backbone("small_resnet", 4, 1, width=8), _batches(1, 28, 4))
    batches = _batches(1, 28, 4)
    split = SplitNetwork(model, "layer1.0")
    base = torch.stack([F.cross_entropy(model(x), y) for x, y in batches]).mean().detach()
    grouped = suffix_rises(split, batches, base, lambda n: None, lambda j: None)
    monkeypatch.setattr(ablation, "ABLATION_IMAGES", 1)
    single = suffix_rises(split, batches, base, lambda n: None, lambda j: None)
    torch.testing.assert_close(grouped, single, rtol=1e-4, atol=1e-6)


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    head_name = "fc"

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = self.conv(x)
        if h.sum() > 0:
            h = h * 2
        return self.fc(h.mean(dim=(2, 3)))


def _labelled(in_channels: int, size: int, classes: int, dtype=torch.float32):
    gen = torch.Generator().manual_seed(1)
    while True:
        x = torch.randn(8, in_channels, size, size, generator=gen, dtype=dtype)
        yield x, torch.randint(0, classes, (8,), generator=gen)


def test_an_untraceable_model_falls_back_to_the_whole_network_and_says_so():
    with pytest.raises(NotSplittable, match="cannot trace"):
        SplitNetwork(_Branchy(), "conv")
    timings = []
    log = PhaseLog(lambda _p: None)
    torch.manual_seed(0)
    model = _Branchy()
    with recording(log):
        split = channel_importance(model, "fc", ["conv"], _labelled(1, 6, 3), 5, 2, 2.0)
    whole = channel_importance(model, "fc", ["conv"], _labelled(1, 6, 3), 5, 2, 2.0, split=False)
    torch.testing.assert_close(split["conv"], whole["conv"])
    timings = [t for t in log.timings if t.phase == "delta_probe"]
    assert len(timings) == 1 and "the whole network per channel" in timings[0].detail and "cannot trace" in timings[0].detail


def test_channel_importance_is_the_same_split_or_not_on_the_paper_layers():
    """The whole probe (head steps, fixed batches, z-scored softmax) over all four of MobileNetV2's
    paper layers, split and unsplit; the phase counts every channel once."""
    torch.manual_seed(0)
    # float64: the z-scores magnify the rises' rounding, and a random MobileNetV2's rises are small
    model = _trained_bn(build_backbone("mobilenet_v2", 3, 3).double(), [(x.double(), y) for x, y in _batches(3, 32, 3)])
    layers = [f"features.{i}.conv.2" for i in (5, 9, 13, 17)]
    events = []
    log = PhaseLog(events.append)
    with recording(log):
        split = channel_importance(model, "classifier.1", layers, _labelled(3, 16, 3, torch.float64), 3, 1, 2.0)
    whole = channel_importance(model, "classifier.1", layers, _labelled(3, 16, 3, torch.float64), 3, 1, 2.0, split=False)
    for name in layers:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-6, atol=1e-8)  # the weights are float32
    channels = sum(model.get_submodule(n).out_channels for n in layers)
    assert events[-1].finished and events[-1].done == channels == events[-1].total
    assert "re-run" in log.timings[0].detail
