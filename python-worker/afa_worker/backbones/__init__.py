"""Backbone registry: one name -> factory table shared by the servicer, ``GetInfo`` (the DSL's
list of choices) and the tests, which parametrise over every registered name."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from afa_worker.backbones.mobilenetv2 import MobileNetV2
from afa_worker.backbones.resnet import RESNET_BLOCKS, ResNet
from afa_worker.backbones.small_resnet import SmallResNet
from afa_worker.errors import SpecError

__all__ = ["BackboneEntry", "BACKBONES", "build_backbone", "backbone_names", "default_layers", "head_module", "replace_head"]


@dataclass(frozen=True)
class BackboneEntry:
    factory: Callable[..., nn.Module]
    default_in_channels: int
    # Default aligned layers: the paper's for ResNet-50/101 and MobileNetV2, else each stage's last block.
    default_layers: Callable[[int], list[str]]
    description: str


def _small_layers(depth: int) -> list[str]:
    return [f"layer{i}.{depth - 1}" for i in (1, 2, 3)]


def _resnet_last_blocks(arch: str) -> Callable[[int], list[str]]:
    blocks = RESNET_BLOCKS[arch][1]
    return lambda _depth: [f"layer{i + 1}.{n - 1}" for i, n in enumerate(blocks)]


BACKBONES: dict[str, BackboneEntry] = {
    "small_resnet": BackboneEntry(
        lambda num_classes, in_channels, width, depth: SmallResNet(num_classes, in_channels, width or 32, depth or 1),
        1,
        lambda depth: _small_layers(depth or 1),
        "ResNet for 28x28 inputs; width (default 32) and depth (blocks per stage, default 1)",
    ),
    "resnet18": BackboneEntry(
        lambda num_classes, in_channels, **_: ResNet("resnet18", num_classes, in_channels), 3,
        _resnet_last_blocks("resnet18"), "torchvision-compatible ResNet-18",
    ),
    "resnet34": BackboneEntry(
        lambda num_classes, in_channels, **_: ResNet("resnet34", num_classes, in_channels), 3,
        _resnet_last_blocks("resnet34"), "torchvision-compatible ResNet-34",
    ),
    "resnet50": BackboneEntry(
        lambda num_classes, in_channels, **_: ResNet("resnet50", num_classes, in_channels), 3,
        lambda _d: ["layer1.2.conv3", "layer2.3.conv3", "layer3.5.conv3", "layer4.2.conv3"],
        "torchvision-compatible ResNet-50",
    ),
    "resnet101": BackboneEntry(
        lambda num_classes, in_channels, **_: ResNet("resnet101", num_classes, in_channels), 3,
        lambda _d: ["layer1.2.conv3", "layer2.3.conv3", "layer3.22.conv3", "layer4.2.conv3"],
        "torchvision-compatible ResNet-101",
    ),
    "mobilenet_v2": BackboneEntry(
        lambda num_classes, in_channels, **_: MobileNetV2(num_classes, in_channels), 3,
        lambda _d: [f"features.{i}.conv.2" for i in (5, 9, 13, 17)],
        "torchvision-compatible MobileNetV2",
    ),
}


def _external_prefixes() -> list[str]:
    found = []
    for module in ("torchvision", "timm"):
        if importlib.util.find_spec(module) is not None:
            found.append(module)
    return found


def backbone_names() -> list[str]:
    """Registry names, plus the ``torchvision:NAME`` / ``timm:NAME`` prefixes that import here."""
    return list(BACKBONES) + [f"{p}:NAME" for p in _external_prefixes()]


def _build_external(name: str, num_classes: int, in_channels: int) -> nn.Module:
    prefix, _, model_name = name.partition(":")
    try:
        if prefix == "torchvision":
            import torchvision.models as tvm  # noqa: PLC0415 - optional dependency

            model = tvm.get_model(model_name, weights=None, num_classes=num_classes)
        else:
            import timm  # noqa: PLC0415 - optional dependency

            model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
    except Exception as exc:  # an import that fails against this torch build, or an unknown model
        raise SpecError("backbone.name", f"cannot build {name!r}: {exc}") from exc
    head = "fc" if hasattr(model, "fc") else "classifier.1" if hasattr(model, "classifier") else "head"
    model.head_name = head  # type: ignore[attr-defined]
    return model


def build_backbone(name: str, num_classes: int, in_channels: int = 0, width: int = 0, depth: int = 0) -> nn.Module:
    """Builds a backbone with a ``head_name`` attribute naming its classifier ``nn.Linear``."""
    if ":" in name and name.split(":", 1)[0] in ("torchvision", "timm"):
        prefix = name.split(":", 1)[0]
        if prefix not in _external_prefixes():
            raise SpecError("backbone.name", f"{prefix} is not importable in this worker", backbone_names())
        return _build_external(name, num_classes, in_channels or 3)
    entry = BACKBONES.get(name)
    if entry is None:
        raise SpecError("backbone.name", f"unknown backbone {name!r}", backbone_names())
    if width < 0 or depth < 0:
        raise SpecError("backbone.width", "width and depth must be positive")
    return entry.factory(num_classes=num_classes, in_channels=in_channels or entry.default_in_channels,
                         width=width, depth=depth)


def default_layers(name: str, depth: int = 0) -> list[str]:
    entry = BACKBONES.get(name)
    if entry is None:
        return []
    return entry.default_layers(depth)


def head_module(model: nn.Module) -> nn.Linear:
    return model.get_submodule(model.head_name)  # type: ignore[arg-type, return-value]


def replace_head(model: nn.Module, num_classes: int, generator_seed: int) -> nn.Linear:
    """A fresh ``nn.Linear`` head, initialised from ``generator_seed`` so sessions are reproducible."""
    old = head_module(model)
    new = nn.Linear(old.in_features, num_classes)
    gen = torch.Generator().manual_seed(generator_seed)
    bound = 1.0 / old.in_features**0.5
    with torch.no_grad():
        new.weight.uniform_(-bound, bound, generator=gen)
        new.bias.uniform_(-bound, bound, generator=gen)
    parent_name, _, child = model.head_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new.to(old.weight.device))
    return new
