"""Every registered backbone builds and runs; parameter names and counts equal torchvision's, so
torchvision/ImageNet weight files load; wrong layer paths list the valid ones."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from afa_worker.backbones import BACKBONES, build_backbone, default_layers, head_module
from afa_worker.errors import SpecError
from afa_worker.features import FeatureTap, resolve_layers
from afa_worker.weights import load_into

# torchvision's published parameter counts (weights metadata "num_params", 1000 classes).
TORCHVISION_NUM_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "mobilenet_v2": 3_504_872,
}

# state_dict keys as torchvision names them, written out (not derived from our code).
TORCHVISION_KEYS = {
    "resnet50": [
        "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
        "layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.conv2.weight", "layer1.0.conv3.weight",
        "layer1.0.bn3.running_var", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.weight",
        "layer1.0.downsample.1.running_mean", "layer1.2.conv3.weight", "layer2.0.downsample.0.weight",
        "layer2.3.conv3.weight", "layer3.5.conv3.weight", "layer3.5.bn3.bias", "layer4.2.conv3.weight",
        "layer4.2.bn3.num_batches_tracked", "fc.weight", "fc.bias",
    ],
    "resnet101": [
        "conv1.weight", "layer1.2.conv3.weight", "layer2.3.conv3.weight", "layer3.0.downsample.0.weight",
        "layer3.22.conv3.weight", "layer3.22.bn3.running_mean", "layer4.2.conv3.weight", "fc.weight", "fc.bias",
    ],
    "mobilenet_v2": [
        "features.0.0.weight", "features.0.1.weight", "features.0.1.running_var",
        "features.1.conv.0.0.weight", "features.1.conv.0.1.bias", "features.1.conv.1.weight", "features.1.conv.2.weight",
        "features.2.conv.0.0.weight", "features.2.conv.1.0.weight", "features.2.conv.2.weight",
        "features.2.conv.3.running_mean", "features.5.conv.2.weight", "features.9.conv.2.weight",
        "features.13.conv.2.weight", "features.17.conv.2.weight", "features.17.conv.3.num_batches_tracked",
        "features.18.0.weight", "features.18.1.bias", "classifier.1.weight", "classifier.1.bias",
    ],
}

ABSENT_KEYS = {
    "resnet50": ["layer1.0.downsample.2.weight", "layer4.3.conv1.weight", "layer1.1.downsample.0.weight"],
    "resnet101": ["layer3.23.conv1.weight"],
    "mobilenet_v2": ["features.1.conv.3.weight", "features.19.0.weight", "classifier.0.weight"],
}


@pytest.mark.parametrize("name", list(TORCHVISION_NUM_PARAMS))
def test_parameter_count_equals_torchvision(name):
    model = build_backbone(name, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_NUM_PARAMS[name]


@pytest.mark.parametrize("name", list(TORCHVISION_KEYS))
def test_parameter_names_equal_torchvision(name):
    keys = set(build_backbone(name, num_classes=1000).state_dict())
    missing = [k for k in TORCHVISION_KEYS[name] if k not in keys]
    assert not missing
    assert not [k for k in ABSENT_KEYS[name] if k in keys]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_runs_and_its_default_layers_resolve(name):
    small = name == "small_resnet"
    model = build_backbone(name, num_classes=7, in_channels=1 if small else 3, width=8 if small else 0)
    model.eval()
    x = torch.randn(2, 1 if small else 3, 28 if small else 64, 28 if small else 64)
    layers = default_layers(name)
    assert layers
    with FeatureTap(model, layers) as tap, torch.no_grad():
        out = model(x)
        maps = tap.take()
    assert out.shape == (2, 7)
    assert list(maps) == layers and all(m.dim() == 4 for m in maps.values())
    assert head_module(model).out_features == 7


def test_paper_layers_are_the_defaults():
    assert default_layers("resnet101") == ["layer1.2.conv3", "layer2.3.conv3", "layer3.22.conv3", "layer4.2.conv3"]
    assert default_layers("mobilenet_v2") == [f"features.{i}.conv.2" for i in (5, 9, 13, 17)]
    assert default_layers("small_resnet", 2) == ["layer1.1", "layer2.1", "layer3.1"]


def test_wrong_layer_path_lists_valid_ones():
    model = build_backbone("small_resnet", num_classes=10, width=4)
    with pytest.raises(SpecError) as err:
        resolve_layers(model, ["layer9.0"])
    assert err.value.field == "layers"
    assert "layer1.0" in err.value.valid and "layer3.0.conv2" in err.value.valid
    assert "fc" not in err.value.valid  # the head is replaced, never aligned


def test_unknown_backbone_lists_registry():
    with pytest.raises(SpecError) as err:
        build_backbone("resnet7", num_classes=10)
    assert err.value.field == "backbone.name" and "resnet101" in err.value.valid


def test_weights_with_another_head_size_load_and_wrong_shapes_are_refused():
    source = build_backbone("small_resnet", num_classes=10, width=4)
    target = build_backbone("small_resnet", num_classes=5, width=4)
    loaded = load_into(target, source.state_dict(), "fc", "mem")
    assert loaded == len(source.state_dict()) - 2  # all but the 10-class head
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    wider = build_backbone("small_resnet", num_classes=10, width=8)
    with pytest.raises(SpecError, match="does not fit this backbone: conv1.weight has shape"):
        load_into(wider, source.state_dict(), "fc", "mem")


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
@pytest.mark.parametrize("name", ["resnet50", "resnet101", "mobilenet_v2"])
def test_torchvision_weights_load_and_outputs_match(name):
    try:
        import torchvision.models as tvm
    except Exception as exc:  # a CUDA build of torchvision against CPU torch fails here
        pytest.skip(f"torchvision does not import: {exc}")
    reference = getattr(tvm, name)(weights=None).eval()
    ours = build_backbone(name, num_classes=1000).eval()
    ref_state = reference.state_dict()
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in ref_state.items()}
    ours.load_state_dict(ref_state)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5)
