"""Feature-map alignment without attention (the DFA baseline of the paper)."""

from __future__ import annotations

import torch

from afa_worker.regularizers.base import FeatureDict, Regularizer
from afa_worker.regularizers.distance import weighted_sq_distance

__all__ = ["FeatureMapAlignment"]


class FeatureMapAlignment(Regularizer):
    """Omega = 0.5/B * sum_l ||F_t^l - F_s^l||^2.

    Averaged over the batch; the public reference code sums over it, so its alphas equal ours
    divided by the batch size."""

    name = "feature_map"
    has_term = True
    needs_source = True
    needs_source_features = True

    def omega(self, target: FeatureDict, source: FeatureDict) -> torch.Tensor:
        total = None
        for name, ft in target.items():
            ones = ft.new_ones(ft.shape[1], dtype=torch.float32)
            term = weighted_sq_distance(ft, source[name], ones, over="channel") / ft.shape[0]
            total = term if total is None else total + term
        return 0.5 * total
