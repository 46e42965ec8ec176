"""Baselines without feature alignment: plain fine-tuning ("L2") and L2-FE."""

from __future__ import annotations

import torch

from afa_worker.regularizers.base import FeatureDict, Regularizer

__all__ = ["NoRegularizer", "L2FE"]


class NoRegularizer(Regularizer):
    """Plain fine-tuning: Omega = 0, with ordinary weight decay (default 1e-4) on all weights."""

    name = "none"

    def omega(self, target: FeatureDict, source: FeatureDict) -> torch.Tensor:
        return torch.zeros(())


class L2FE(Regularizer):
    """L2-FE (fixed extractor): the target backbone is frozen and only the new head is trained."""

    name = "l2fe"
    freezes_backbone = True

    def omega(self, target: FeatureDict, source: FeatureDict) -> torch.Tensor:
        return torch.zeros(())
