"""Checkpoint writes stay where they belong: inside the worker's checkpoint directory (or one it
was allowed), through exclusive temp files that a planted link cannot redirect, never over a file
that is not one of ours, and with a clear error and no temp file left when the target cannot be
written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from torch import nn

from afa_worker.checkpoint import CheckpointPolicy, WriteRefused, save_checkpoint


@pytest.fixture
def model() -> nn.Module:
    return nn.Linear(3, 2)


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "ckpt").mkdir()
    return tmp_path / "ckpt"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_relative_path_lands_in_the_checkpoint_directory(model, root):
    path, sidecar, size, digest = save_checkpoint(model, "runs/a", {"spec": None}, CheckpointPolicy(root))
    assert path == str(root / "runs" / "a.safetensors") and Path(sidecar).name == "a.json"
    assert json.loads(Path(sidecar).read_text())["sha256"] == digest and Path(path).stat().st_size == size
    # writing it again replaces our own checkpoint
    save_checkpoint(model, "runs/a", {}, CheckpointPolicy(root))


def test_a_path_outside_is_refused_unless_allowed(model, root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    for path in (str(elsewhere / "m"), "../escape", str(root / ".." / "escape")):
        with pytest.raises(WriteRefused, match="outside the worker's checkpoint directory"):
            save_checkpoint(model, path, {}, CheckpointPolicy(root))
    assert not elsewhere.exists() and not (tmp_path / "escape.safetensors").exists()
    save_checkpoint(model, str(elsewhere / "m"), {}, CheckpointPolicy(root, allowed=(elsewhere,)))
    assert (elsewhere / "m.safetensors").exists()


def test_a_link_inside_the_directory_cannot_carry_a_write_outside(model, root, tmp_path):
    outside = tmp_path / "victim-dir"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(WriteRefused, match="outside"):
        save_checkpoint(model, "link/m", {}, CheckpointPolicy(root))
    assert list(outside.iterdir()) == []


def test_a_planted_temp_name_link_is_never_followed(model, root, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    # the old predictable temp names, all pointing at the victim
    for name in (f".m.safetensors.{os.getpid()}.tmp", f".m.json.{os.getpid()}.tmp"):
        (root / name).symlink_to(victim)
    save_checkpoint(model, "m", {}, CheckpointPolicy(root))
    assert victim.read_text() == "precious"


def test_a_file_that_is_not_our_checkpoint_is_not_overwritten(model, root):
    (root / "notes.json").write_text('{"mine": true}')
    with pytest.raises(WriteRefused, match="notes.json exists and is not a checkpoint of this worker"):
        save_checkpoint(model, "notes", {}, CheckpointPolicy(root))
    assert (root / "notes.json").read_text() == '{"mine": true}' and not (root / "notes.safetensors").exists()
    (root / "data.safetensors").write_bytes(b"not ours")
    with pytest.raises(WriteRefused, match="data.safetensors exists and is not a checkpoint"):
        save_checkpoint(model, "data", {}, CheckpointPolicy(root))
    (root / "dir.safetensors").mkdir()
    with pytest.raises(WriteRefused, match="is not a regular file"):
        save_checkpoint(model, "dir", {}, CheckpointPolicy(root))
    with pytest.raises(WriteRefused, match="is a directory or device"):
        save_checkpoint(model, "dir.safetensors", {}, CheckpointPolicy(root))
    assert _leftovers(root) == []


@pytest.mark.parametrize("path", ["/dev/full", "/sys/afa-model", "/proc/nope/model"])
def test_an_unwritable_target_is_a_clear_error_and_leaves_no_temp_file(model, path):
    with pytest.raises(WriteRefused, match=r"^path: (cannot write|/dev/full is a directory or device)"):
        save_checkpoint(model, path, {}, CheckpointPolicy(Path("/"), anywhere=True))
    assert not any(p.name.endswith(".tmp") for p in Path(path).parent.iterdir()) if Path(path).parent.exists() else True


def test_a_read_only_directory_is_a_clear_error(model, root):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories; /sys and /proc above stand in for it")
    root.chmod(0o500)
    try:
        with pytest.raises(WriteRefused, match="cannot write"):
            save_checkpoint(model, "m", {}, CheckpointPolicy(root))
    finally:
        root.chmod(0o700)
