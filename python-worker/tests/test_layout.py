"""The memory layout per model (afa_worker.layout), against the fault it avoids: oneDNN's AVX-512
1x1 stride-2 backward-weights kernel corrupts the heap in channels-last with 2-15 input channels.
The layers of that fault are found by their shape; such a model and its inputs run contiguous; a
probe in a throwaway process catches the real fault (and its verdict is cached, and it can be
cancelled); every width x input size x precision of the small ResNet trains without a native
crash, in a process of its own so a crash cannot take the suite with it."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker import layout as layout_module
from afa_worker.backbones import build_backbone
from afa_worker.cancel import Cancelled, cancellable
from afa_worker.layout import ModelRecipe, choose_layout, faulty_layers, probed_layers
from afa_worker.session import create_session

CPU = torch.device("cpu")


def _recipe(width: int, name: str = "small_resnet") -> ModelRecipe:
    return ModelRecipe(name, 10, 1, width, 0)


def _model(recipe: ModelRecipe):
    return build_backbone(recipe.name, recipe.num_classes, recipe.in_channels, recipe.width, recipe.depth)


def test_the_fault_s_layers_are_found_by_their_shape():
    # Written out from the architecture: the downsample of layer2 sees `width` channels, layer3's 2 x width.
    assert faulty_layers(_model(_recipe(4))) == ["layer2.0.downsample.0", "layer3.0.downsample.0"]
    assert faulty_layers(_model(_recipe(8))) == ["layer2.0.downsample.0"]
    assert faulty_layers(_model(_recipe(16))) == []
    resnet = _model(_recipe(0, "resnet18"))
    assert faulty_layers(resnet) == [] and probed_layers(resnet) == ["conv1"]  # the 7x7 stride-2 stem, 1 channel in
    assert probed_layers(_model(_recipe(16))) == []


def test_a_model_with_the_fault_s_layers_and_its_inputs_run_contiguous_others_channels_last():
    def session(width: int):
        return create_session(pb.CreateSessionRequest(backbone=pb.BackboneSpec(name="small_resnet", width=width), seed=0,
                                                      data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=2, image_size=64,
                                                                       color=pb.COLOR_MODE_RGB)))  # 3 channels: the layouts differ

    narrow, wide = session(8), session(16)
    assert narrow.layout.name == "contiguous" and "layer2.0.downsample.0" in narrow.layout.reason
    assert wide.layout.name == "channels_last"
    for s, fmt in ((narrow, torch.contiguous_format), (wide, torch.channels_last)):
        conv = s.target.layer2[0].downsample[0].weight
        batch = s.data.normalise(s.data.train.x[:4])
        assert conv.is_contiguous(memory_format=fmt) and batch.is_contiguous(memory_format=fmt)
        assert not batch.is_contiguous(memory_format=torch.channels_last if fmt == torch.contiguous_format else torch.contiguous_format)
    assert narrow.describe() == "small_resnet width 8, input 3x64x64, contiguous, " + narrow.precision.describe() + " on cpu"


def test_the_probe_catches_the_real_fault_in_a_throwaway_process_and_its_verdict_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("AFA_CACHE", str(tmp_path))
    # Without the known rule, a width-8 model falls to the probe: its channels-last backward at 64 x 64 kills the probe.
    monkeypatch.setattr(layout_module, "faulty_layers", lambda _m: [])
    recipe = _recipe(8)
    crashed = choose_layout(_model(recipe), recipe, (1, 64, 64), CPU, False)
    assert crashed.name == "contiguous" and "the probe died (signal" in crashed.reason and crashed.probe_seconds > 0
    again = choose_layout(_model(recipe), recipe, (1, 64, 64), CPU, False)
    assert (again.name, again.reason, again.probe_seconds) == ("contiguous", crashed.reason, 0.0)  # read from the cache
    survived = choose_layout(_model(recipe), recipe, (1, 28, 28), CPU, False)  # the kernel is sound at 28 x 28
    assert survived.name == "channels_last" and survived.reason == "channels-last (probed)"
    assert len(list((tmp_path / "layout").glob("*.json"))) == 2


def test_a_cancelled_session_does_not_wait_for_the_probe(monkeypatch, tmp_path):
    monkeypatch.setenv("AFA_CACHE", str(tmp_path))
    started = []
    real = subprocess.Popen

    def popen(*args, **kwargs):
        child = real(*args, **kwargs)
        started.append(child)
        event.set()  # cancelled as soon as the probe is under way
        return child

    monkeypatch.setattr(layout_module.subprocess, "Popen", popen)
    event = threading.Event()
    recipe = _recipe(0, "resnet18")
    with cancellable(event), pytest.raises(Cancelled, match="probing the memory layout"):
        choose_layout(_model(recipe), recipe, (1, 64, 64), CPU, False)
    assert started and started[0].poll() is not None  # the probe was killed, not left running
    assert not list((tmp_path / "layout").glob("*.json"))  # and no verdict was recorded


def test_every_width_input_size_and_precision_trains_without_a_native_crash(tmp_path):
    script = Path(__file__).with_name("layout_matrix.py")
    env = {**__import__("os").environ, "AFA_CACHE": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=1800)
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0, f"died ({run.returncode}) after {lines[-1] if lines else 'nothing'}:\n{run.stderr[-3000:]}"
    assert sum(line.startswith("done ") for line in lines) == 4 * 4 * 2
