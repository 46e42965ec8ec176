"""The TensorBoard writer process: what the SDK sends becomes event files tensorboard's own reader reads,
run names cannot leave the log directory, and bad lines are skipped with a warning without losing the
good ones or ending the writer."""

from __future__ import annotations

import base64
import io
import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from afa_worker import channel
from afa_worker.tensorboard_writer import MAX_NAME_BYTES, run_name, serve_stdin


def _line(body: dict | str) -> str:
    return body if isinstance(body, str) else channel.PREFIX + json.dumps({"tensorboard": body})


def test_run_names_stay_inside_the_log_directory_and_within_the_file_systems_name_limit():
    assert run_name("lr=0.01 seed=0") == "lr=0.01 seed=0"
    assert "/" not in run_name("../../etc/passwd") and "\\" not in run_name("a\\b")
    assert run_name("..") == "_.." and run_name(".") == "_." and run_name("") == "run"
    assert run_name("a\nb\x00c") == "a_b_c"
    cjk = "学" * 100  # 300 bytes in UTF-8: over the 255 a path component may have
    assert len(run_name(cjk).encode()) <= MAX_NAME_BYTES
    assert run_name(cjk) != run_name("学" * 99 + "习")  # the cut keeps them apart
    run_name(cjk).encode("utf-8")  # never cut inside a character


def test_scalars_and_images_are_read_back_and_bad_lines_are_skipped_with_a_warning(tmp_path):
    rgb = bytes(range(2 * 3 * 3))
    nested = "[" * 100_000 + "]" * 100_000
    lines = [
        {"run": "trial a", "step": 3, "scalars": {"accuracy/val": 0.25, "loss/val": 2.0}},
        "not json",
        channel.PREFIX + "{not json",
        {"run": "trial a", "step": "1e400", "scalars": {"x": 1.0}},  # a step no uint64 holds
        {"run": "trial a", "step": 5, "scalars": {"x": [1, 2]}},  # a list where a number belongs
        channel.PREFIX + json.dumps({"tensorboard": {"run": "deep", "step": 1}})[:-1] + ', "scalars": ' + nested + "}",
        {"run": "学" * 100, "step": 4, "scalars": {"accuracy/val": 0.75}},  # a name of 300 bytes
        {"run": "trial a", "step": 6, "scalars": {"accuracy/val": 0.5}},
        {"run": "trial a", "step": 6, "image": {"tag": "attention/s/layer1.0", "height": 2, "width": 3,
                                                 "rgb": base64.b64encode(rgb).decode()}},
        {"run": "trial b", "step": 1, "image": {"tag": "bad", "height": 5, "width": 5, "rgb": base64.b64encode(rgb).decode()}},
    ]
    stdin = io.StringIO("\n".join(_line(line) for line in lines) + "\n")
    out, err = io.StringIO(), io.StringIO()
    assert serve_stdin(str(tmp_path), stdin, out, err) == 6
    assert out.getvalue().startswith(channel.PREFIX) and '"ready"' in out.getvalue()
    assert err.getvalue().count("skipped") == 7  # six lines, and the count in all
    events = EventAccumulator(str(tmp_path / "trial a"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("accuracy/val")] == [(3, 0.25), (6, 0.5)]
    image = events.Images("attention/s/layer1.0")[0]
    assert (image.step, image.width, image.height) == (6, 3, 2)
    cjk = EventAccumulator(str(tmp_path / run_name("学" * 100)), size_guidance={"scalars": 0})
    cjk.Reload()
    assert [e.value for e in cjk.Scalars("accuracy/val")] == [0.75]
