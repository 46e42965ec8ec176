"""The two attention modules of AFA (Xie et al., 2021, section 3). Both read the **source** feature
maps (detached) and are trained jointly with the target network by the same optimiser."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SpatialAttention", "ChannelAttention", "attention_entropy"]


class SpatialAttention(nn.Module):
    """A = softmax(MLP_s(mean_c F_s)) over the HW positions; MLP_s = Linear(HW->H, no bias), ReLU,
    Linear(H->HW). Returns (B, HW) weights summing to 1 per image."""

    def __init__(self, height: int, width: int, hidden: int = 0):
        super().__init__()
        hw = height * width
        hidden = hidden or height
        self.mlp = nn.Sequential(nn.Linear(hw, hidden, bias=False), nn.ReLU(inplace=True), nn.Linear(hidden, hw))

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        pooled = source.detach().mean(dim=1).flatten(1)
        return torch.softmax(self.mlp(pooled), dim=1)


class ChannelAttention(nn.Module):
    """a = softmax_j(MLP_c(F_s,j flattened) + bias_j) over the C channels; MLP_c = Linear(HW->H, no
    bias), ReLU, Linear(H->1, no bias), shared across channels, plus a learnable bias per channel.
    Returns (B, C) weights summing to 1 per image.

    With ``uniform_floor`` f > 0 the weights are f / C + (1 - f) * softmax: no channel falls below
    f / C, so the attention cannot collapse onto one channel (f = 1 is plain feature-map alignment)."""

    def __init__(self, channels: int, height: int, width: int, hidden: int = 0, uniform_floor: float = 0.0):
        super().__init__()
        hidden = hidden or height
        self.mlp = nn.Sequential(nn.Linear(height * width, hidden, bias=False), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 1, bias=False))
        self.channel_bias = nn.Parameter(torch.zeros(channels))
        self.uniform_floor = uniform_floor

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        scores = self.mlp(source.detach().flatten(2)).squeeze(-1) + self.channel_bias
        weights = torch.softmax(scores, dim=1)
        if self.uniform_floor:
            weights = self.uniform_floor / weights.shape[1] + (1 - self.uniform_floor) * weights
        return weights


def attention_entropy(weights: torch.Tensor) -> tuple[float, float]:
    """Mean entropy (nats) of per-image attention distributions, and the uniform maximum."""
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(dim=1).mean()
    return float(entropy), float(torch.log(torch.tensor(float(weights.shape[1]))))
