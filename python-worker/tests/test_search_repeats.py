"""Values a study already holds as completed are not run again: asked a second time (a sampler
proposing a configuration again, or a second driver of a shared study proposing one the first
finished), the new trial is told the completed trial's value at once and answered as its repeat."""

from __future__ import annotations

import argparse
import json

import pytest

optuna = pytest.importorskip("optuna")

from afa_worker._gen.afa.v1 import process_pb2 as pp  # noqa: E402
from afa_worker.search import _Study, add_arguments  # noqa: E402

COMPLETE = optuna.trial.TrialState.COMPLETE


def _driver(journal: str, n: int = 3) -> _Study:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    space = json.dumps({"lr": {"kind": "categorical", "n": n}})
    return _Study(parser.parse_args(["--storage", journal, "--study", "repeats", "--space", space, "--sampler", "random"]))


def _ask(study: _Study, driver: str, lr: int | None = None) -> pp.SearchAsked:
    fixed = {} if lr is None else {"lr": json.dumps(lr)}
    return study.ask(pp.SearchAsk(limit=0, fixed=fixed, driver=driver))


def test_values_another_driver_completed_are_told_their_value_not_run(tmp_path):
    journal = str(tmp_path / "study.journal")
    a, b = _driver(journal), _driver(journal)
    first = _ask(a, "a", lr=0)
    assert not first.HasField("repeat_of")
    a.tell(pp.SearchTell(number=first.number, outcome=pp.SEARCH_OUTCOME_COMPLETE, value=0.7))
    again = _ask(b, "b", lr=0)
    assert again.HasField("repeat_of") and again.repeat_of == first.number
    told = next(t for t in b.study.get_trials(deepcopy=False) if t.number == again.number)
    assert told.state == COMPLETE and told.value == 0.7  # settled in the study: no driver runs it
    assert again.number not in b.trials


def test_values_still_running_or_pruned_are_not_repeats(tmp_path):
    journal = str(tmp_path / "study.journal")
    a, b = _driver(journal), _driver(journal)
    running = _ask(a, "a", lr=1)
    assert not _ask(b, "b", lr=1).HasField("repeat_of")  # no value to tell yet: both run it
    a.tell(pp.SearchTell(number=running.number, outcome=pp.SEARCH_OUTCOME_PRUNED))
    assert not _ask(b, "b", lr=1).HasField("repeat_of")  # pruned: no value either


def test_a_sampler_proposing_the_only_configuration_again_gets_a_repeat(tmp_path):
    a = _driver(str(tmp_path / "study.journal"), n=1)
    first = _ask(a, "a")
    a.tell(pp.SearchTell(number=first.number, outcome=pp.SEARCH_OUTCOME_COMPLETE, value=0.4))
    second = _ask(a, "a")
    assert second.repeat_of == first.number
    assert a.counts()["complete"] == 2  # a repeat holds its place in the budget: a spent space ends the search
