"""Attentive Feature Alignment (Xie, Wen, Wang, Wu, Tan; Neural Networks 138, 2021): spatial (AST)
and channel (ACT) attentive transfer. The attention modules read the source maps and are trained
jointly with the target network."""

from __future__ import annotations

import torch
from torch import nn

from afa_worker.attention import ChannelAttention, SpatialAttention
from afa_worker.regularizers.base import LayerwiseRegularizer, module_key
from afa_worker.regularizers.distance import weighted_sq_distance

__all__ = ["AttentiveSpatialTransfer", "AttentiveChannelTransfer"]


class _AttentiveTransfer(LayerwiseRegularizer):
    """One attention module per aligned layer; Omega sums each layer's attention-weighted term."""

    has_attention = True

    def __init__(self, alpha: float, modules: dict[str, nn.Module]):
        super().__init__(alpha)
        self.attention = nn.ModuleDict({module_key(name): module for name, module in modules.items()})

    def _term(self, ft: torch.Tensor, fs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attention_weights(self, layer: str, source_maps: torch.Tensor) -> torch.Tensor:
        """The attention module of ``layer`` applied to source maps: (B, HW) or (B, C) weights."""
        return self.attention[module_key(layer)](source_maps)

    def layer_term(self, layer: str, ft: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
        fs = fs.detach().float()
        weights = self.attention_weights(layer, fs)
        self.last_attention[layer] = weights.detach()
        return self._term(ft, fs, weights)


class AttentiveSpatialTransfer(_AttentiveTransfer):
    """Omega = 0.5/B * sum_l sum_b sum_p (HW * A_p)^2 * ||F_t[:,p] - F_s[:,p]||^2,
    A = softmax(MLP_s(mean_c F_s)) over positions p."""

    name = "afa_spatial"

    def __init__(self, alpha: float, layer_shapes: dict[str, tuple[int, int, int]], hidden: int = 0):
        super().__init__(alpha, {n: SpatialAttention(h, w, hidden) for n, (_c, h, w) in layer_shapes.items()})

    def _term(self, ft: torch.Tensor, fs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        hw = weights.shape[1]  # weights: (B, HW)
        return weighted_sq_distance(ft, fs, (hw * weights).pow(2), over="position")


class AttentiveChannelTransfer(_AttentiveTransfer):
    """Omega = 0.5/B * sum_l sum_b sum_j C * a_j * ||F_t,j - F_s,j||^2,
    a = softmax_j(MLP_c(F_s,j) + bias_j) over channels j (with a uniform floor f: f/C + (1-f) a)."""

    name = "afa_channel"

    def __init__(self, alpha: float, layer_shapes: dict[str, tuple[int, int, int]], hidden: int = 0,
                 uniform_floor: float = 0.0):
        super().__init__(alpha, {n: ChannelAttention(c, h, w, hidden, uniform_floor)
                                 for n, (c, h, w) in layer_shapes.items()})

    def _term(self, ft: torch.Tensor, fs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return weighted_sq_distance(ft, fs, weights, over="channel") * weights.shape[1]  # weights: (B, C)
