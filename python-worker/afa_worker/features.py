"""All forward-hook handling in one place: resolve dotted module paths, capture their outputs,
remove the hooks when done."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from afa_worker.errors import SpecError

__all__ = ["FeatureTap", "resolve_layers"]


def resolve_layers(model: nn.Module, layers: Sequence[str], field: str = "layers") -> list[str]:
    modules = dict(model.named_modules())
    head = getattr(model, "head_name", None)
    valid = [name for name in modules if name and name != head]
    for name in layers:
        if name not in modules or name == head:
            raise SpecError(field, f"{name!r} is not a module of this backbone", valid)
    if len(set(layers)) != len(layers):
        raise SpecError(field, f"layers repeat: {list(layers)}")
    return list(layers)


class FeatureTap:
    """Captures the outputs of named modules on every forward pass of ``model``.

    ``features`` maps layer name to the last captured tensor; it is replaced, not appended to, so a
    training loop holds one set of maps at a time. Use as a context manager or call ``close()``.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str]):
        self.layers = resolve_layers(model, layers)
        self.features: dict[str, torch.Tensor] = {}
        self._handles = [
            model.get_submodule(name).register_forward_hook(self._hook(name)) for name in self.layers
        ]

    def _hook(self, name: str):
        def capture(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
            self.features[name] = output

        return capture

    def take(self) -> dict[str, torch.Tensor]:
        """The maps of the last forward pass, in layer order; the tap forgets them."""
        taken = {name: self.features[name] for name in self.layers if name in self.features}
        self.features = {}
        return taken

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.features = {}

    def __enter__(self) -> FeatureTap:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
