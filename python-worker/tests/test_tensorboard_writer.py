"""The TensorBoard writer process: what the SDK sends becomes event files tensorboard's own reader reads,
run names cannot leave the log directory, and a bad line is reported without losing the good ones."""

from __future__ import annotations

import base64
import io
import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from afa_worker.tensorboard_writer import run_name, serve_stdin


def test_run_names_stay_inside_the_log_directory():
    assert run_name("lr=0.01 seed=0") == "lr=0.01 seed=0"
    assert "/" not in run_name("../../etc/passwd") and "\\" not in run_name("a\\b")
    assert run_name("..") == "_.." and run_name(".") == "_." and run_name("") == "run"
    assert run_name("a\nb\x00c") == "a_b_c"


def test_scalars_and_images_are_read_back_and_a_bad_line_is_skipped(tmp_path):
    rgb = bytes(range(2 * 3 * 3))
    lines = [
        {"run": "trial a", "step": 3, "scalars": {"accuracy/val": 0.25, "loss/val": 2.0}},
        {"run": "trial a", "step": 6, "scalars": {"accuracy/val": 0.5}},
        "not json",
        {"run": "trial a", "step": 6, "image": {"tag": "attention/s/layer1.0", "height": 2, "width": 3,
                                                 "rgb": base64.b64encode(rgb).decode()}},
        {"run": "trial b", "step": 1, "image": {"tag": "bad", "height": 5, "width": 5, "rgb": base64.b64encode(rgb).decode()}},
    ]
    stdin = io.StringIO("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    assert serve_stdin(str(tmp_path), stdin) == 4  # two bad lines, reported in the exit code
    events = EventAccumulator(str(tmp_path / "trial a"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("accuracy/val")] == [(3, 0.25), (6, 0.5)]
    image = events.Images("attention/s/layer1.0")[0]
    assert (image.step, image.width, image.height) == (6, 3, 2)
