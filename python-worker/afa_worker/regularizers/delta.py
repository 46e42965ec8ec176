"""DELTA (Li et al., ICLR 2019): feature alignment weighted by fixed per-channel importance."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from afa_worker.cancel import check_cancelled, interruptible
from afa_worker.phases import phase
from afa_worker.regularizers.ablation import NotSplittable, SplitNetwork, suffix_rises
from afa_worker.regularizers.base import LayerwiseRegularizer, module_key
from afa_worker.regularizers.distance import weighted_sq_distance

__all__ = ["DELTA", "channel_importance", "importance_from_rises"]

_log = logging.getLogger("afa_worker")


class DELTA(LayerwiseRegularizer):
    """Omega = 0.5/B * sum_l sum_j C * a_j * ||F_t,j - F_s,j||^2 / (HW), with a_j fixed.

    Averaged over the batch; the public reference code sums over it, so its alphas equal ours
    divided by the batch size."""

    name = "delta"

    def __init__(self, alpha: float, weights: dict[str, torch.Tensor]):
        super().__init__(alpha)
        for name, w in weights.items():
            self.register_buffer(f"w_{module_key(name)}", w.detach().clone())

    def channel_weights(self, layer: str) -> torch.Tensor:
        return getattr(self, f"w_{module_key(layer)}")

    def layer_term(self, layer: str, ft: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
        _b, c, h, w = ft.shape
        return weighted_sq_distance(ft, fs, c * self.channel_weights(layer) / (h * w), over="channel")


@torch.no_grad()
def _mean_loss(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    losses = []
    for x, y in batches:
        check_cancelled("measuring DELTA's channel importance")
        losses.append(F.cross_entropy(model(x), y))
    return torch.stack(losses).mean()


def channel_importance(
    model: nn.Module,
    head_name: str,
    layers: list[str],
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    head_iterations: int,
    ablation_batches: int,
    temperature: float,
    lr: float = 0.01,
    split: bool = True,
) -> dict[str, torch.Tensor]:
    """a_j per aligned layer: train the head only on target data (on a copy of the model), then for
    each channel j zero that layer's output channel and measure the rise in target CE over a few
    fixed batches; per layer z-normalise the rises and take softmax(z / temperature).

    Zeroing the layer's output channel equals zeroing the conv filter when the layer is a conv
    without bias (the reference's case) and extends the rule to any module path. The ablations
    re-run only the network after the layer (``ablation.SplitNetwork``) unless ``split`` is False
    or the model cannot be split; the result is the same either way."""
    probe = copy.deepcopy(model)
    head = probe.get_submodule(head_name)
    for p in probe.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    probe.eval()  # BN statistics stay the source's, as in the frozen extractor
    _log.info("DELTA probe: %d head-only steps, then each channel of %d layers ablated over %d batches",
              head_iterations, len(layers), ablation_batches)
    with phase("delta_probe", 0, "channels") as tracker:
        tracker.detail = f"{head_iterations} head-only steps"
        optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)
        with interruptible("training DELTA's head-only probe", probe):
            for _ in range(head_iterations):
                check_cancelled("training DELTA's head-only probe")
                x, y = next(batches)
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(probe(x), y).backward()
                optimizer.step()
        fixed = [next(batches) for _ in range(max(1, ablation_batches))]
        tracker.total = sum(_output_channels(probe, probe.get_submodule(name), fixed[0][0]) for name in layers)
        weights: dict[str, torch.Tensor] = {}
        modes = []
        with interruptible("measuring DELTA's channel importance", probe):
            base = _mean_loss(probe, fixed)
            for name in layers:
                rises, mode = _layer_rises(probe, name, fixed, base, tracker, split)
                modes.append(mode)
                weights[name] = importance_from_rises(rises.float(), temperature)
        tracker.detail += f", {tracker.total} channels over {len(fixed)} batches ({_modes(layers, modes)})"
    _log.info("DELTA probe done: %s in %.1f s", tracker.detail, tracker.seconds)
    return weights


def _modes(layers: list[str], modes: list[str]) -> str:
    if len(set(modes)) == 1:
        return modes[0]
    return "; ".join(f"{layer}: {mode}" for layer, mode in zip(layers, modes))


def _layer_rises(probe: nn.Module, name: str, fixed: list[tuple[torch.Tensor, torch.Tensor]], base: torch.Tensor,
                 tracker, split: bool) -> tuple[torch.Tensor, str]:
    """The CE rise per output channel of layer ``name`` zeroed, and how it was measured."""
    why = "asked for"
    if split:
        try:
            network = SplitNetwork(probe, name)
            rises = suffix_rises(network, fixed, base, tracker.advance, lambda j: check_cancelled(
                f"measuring DELTA's channel importance ({name}, channel {j})"))
            return rises, "the network after each layer re-run"
        except NotSplittable as exc:
            why = str(exc)
            _log.info("DELTA probe: %s re-runs the whole network per channel: %s", name, why)
    module = probe.get_submodule(name)
    channel = {"j": -1}

    def zero_channel(_m, _i, out, channel=channel):
        out = out.clone()
        out[:, channel["j"]] = 0
        return out

    handle = module.register_forward_hook(zero_channel)
    try:
        rises = []
        n_channels = _output_channels(probe, module, fixed[0][0])
        for j in range(n_channels):
            check_cancelled(f"measuring DELTA's channel importance ({name}, channel {j} of {n_channels})")
            channel["j"] = j
            rises.append(_mean_loss(probe, fixed) - base)
            tracker.advance()
    finally:
        handle.remove()
    return torch.stack(rises), f"the whole network per channel ({why})"


def importance_from_rises(rise: torch.Tensor, temperature: float) -> torch.Tensor:
    """a_j = softmax_j(z_j / T), z the rises z-scored over the layer's channels (DELTA's rule)."""
    z = (rise - rise.mean()) / (rise.std() + 1e-8)
    return torch.softmax(z / temperature, dim=0)


def _output_channels(model: nn.Module, module: nn.Module, x: torch.Tensor) -> int:
    seen = {}

    def record(_m, _i, out) -> None:  # returning None keeps the module's output
        seen["c"] = out.shape[1]

    handle = module.register_forward_hook(record)
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        handle.remove()
    return int(seen["c"])
