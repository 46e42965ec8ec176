"""What every regulariser shares: the value it returns is Omega (unscaled); the trainer adds
``alpha * Omega`` to the loss. Feature dictionaries map layer name to (B, C, H, W) maps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Regularizer", "LayerwiseRegularizer", "RegularizerContext", "FeatureDict", "module_key"]

FeatureDict = dict[str, torch.Tensor]


@dataclass
class RegularizerContext:
    """What a regulariser may need from the session when it is built at the start of a stage."""

    target: nn.Module
    source: nn.Module | None
    layers: list[str]
    layer_shapes: dict[str, tuple[int, int, int]]
    head_name: str
    # Labelled target batches (normalised inputs, labels), for DELTA's channel importance.
    batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]] | None = None
    extra: dict = field(default_factory=dict)


class Regularizer(nn.Module):
    """Base class. Subclasses set the flags and implement ``omega``."""

    name = "base"
    #: The kind compares the target with a frozen source model, so the session must have one.
    needs_source = False
    #: The trainer runs the frozen source forward and passes its maps (implies ``needs_source``).
    needs_source_features = False
    #: The kind learns attention modules (trained with the network, reported by entropy).
    has_attention = False
    #: The target backbone is frozen; only the head trains (L2-FE).
    freezes_backbone = False
    #: Omega is not identically zero, so the trainer evaluates it.
    has_term = False
    #: The top Hessian eigenvalue of Omega in the backbone weights when it is known in closed form
    #: (None: the stability estimate measures it).
    exact_lambda_max: float | None = None

    def __init__(self, alpha: float = 0.0, weight_decay: float = 0.0):
        super().__init__()
        self.alpha = float(alpha)
        #: Ordinary weight decay the optimiser applies on all weights (plain fine-tuning's only term).
        self.weight_decay = float(weight_decay)
        self.last_attention: dict[str, torch.Tensor] = {}

    def omega(self, target: FeatureDict, source: FeatureDict) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, target: FeatureDict, source: FeatureDict) -> torch.Tensor:
        return self.omega(target, source)


def module_key(layer: str) -> str:
    """A layer's name as a ModuleDict key or buffer name (which cannot hold dots)."""
    return layer.replace(".", "__")


class LayerwiseRegularizer(Regularizer):
    """The feature terms' shared shape: Omega = 0.5/B * sum_l term_l(F_t^l, F_s^l), one term per aligned
    layer, each summed over the batch here and averaged by the division. Subclasses give ``layer_term``."""

    has_term = True
    needs_source = True
    needs_source_features = True

    def layer_term(self, layer: str, ft: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
        """The layer's term summed over the batch (a scalar)."""
        raise NotImplementedError

    def omega(self, target: FeatureDict, source: FeatureDict) -> torch.Tensor:
        total = None
        for name, ft in target.items():
            term = self.layer_term(name, ft, source[name]) / ft.shape[0]
            total = term if total is None else total + term
        return 0.5 * total

