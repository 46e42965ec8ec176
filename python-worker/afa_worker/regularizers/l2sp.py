"""L2-SP (Li, Grandvalet, Davoine, ICML 2018): pull the target weights towards the source's."""

from __future__ import annotations

import torch
from torch import nn

from afa_worker.regularizers.base import FeatureDict, Regularizer

__all__ = ["L2SP"]


class L2SP(Regularizer):
    """Omega = 0.5 * sum over non-head parameters of ||w - w_source||^2.

    The starting point is snapshotted (detached) when the regulariser is built, from the source
    model's weights: the target starts as a copy of them."""

    name = "l2sp"
    has_term = True
    needs_source = True
    #: Omega's Hessian in the regularised weights is the identity.
    exact_lambda_max = 1.0

    def __init__(self, alpha: float, target: nn.Module, source: nn.Module, head_name: str):
        super().__init__(alpha)
        source_params = dict(source.named_parameters())
        self._pairs: list[tuple[nn.Parameter, torch.Tensor]] = []
        for name, param in target.named_parameters():
            if name.startswith(head_name + ".") or name not in source_params:
                continue
            self._pairs.append((param, source_params[name].detach().clone()))

    def omega(self, target: FeatureDict, source: FeatureDict) -> torch.Tensor:
        params = [p for p, _ in self._pairs]
        refs = [r for _, r in self._pairs]
        # One fused reduction instead of a Python sum over hundreds of tensors.
        diffs = torch._foreach_sub(params, refs)
        return 0.5 * torch.stack(torch._foreach_norm(diffs)).pow(2).sum()
