"""Feature-map alignment without attention (the DFA baseline of the paper)."""

from __future__ import annotations

import torch

from afa_worker.regularizers.base import LayerwiseRegularizer
from afa_worker.regularizers.distance import weighted_sq_distance

__all__ = ["FeatureMapAlignment"]


class FeatureMapAlignment(LayerwiseRegularizer):
    """Omega = 0.5/B * sum_l ||F_t^l - F_s^l||^2.

    Averaged over the batch; the public reference code sums over it, so its alphas equal ours
    divided by the batch size."""

    name = "feature_map"

    def layer_term(self, layer: str, ft: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
        return weighted_sq_distance(ft, fs, ft.new_ones(ft.shape[1], dtype=torch.float32), over="channel")
