"""The search process's budget holds when drivers race for its last place: two drivers that both
saw one place left both ask, and the trial the storage numbered later is over budget (failed at
once, never handed out, in no count or summary), whichever driver asked it."""

from __future__ import annotations

import argparse
import json

import pytest

optuna = pytest.importorskip("optuna")

from afa_worker._gen.afa.v1 import process_pb2 as pp  # noqa: E402
from afa_worker.search import OVER_BUDGET_ATTR, _Study, add_arguments  # noqa: E402


def _driver(journal: str) -> _Study:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    space = json.dumps({"lr": {"kind": "float", "low": 1e-3, "high": 1.0, "log": True}})
    return _Study(parser.parse_args(["--storage", journal, "--study", "race", "--space", space, "--sampler", "random"]))


def test_two_drivers_racing_for_the_last_place_take_it_once(tmp_path, monkeypatch):
    journal = str(tmp_path / "study.journal")
    a, b = _driver(journal), _driver(journal)
    first = a.ask(pp.SearchAsk(limit=2, driver="a"))
    assert not first.exhausted
    # b's view before it asks is stale, as when a's ask of the last place lands between b's check and b's ask
    real = _Study._counted
    monkeypatch.setattr(b, "_counted", lambda before=None: 1 if before is None else real(b, before))
    second = a.ask(pp.SearchAsk(limit=2, driver="a"))  # the last place: a takes it
    raced = b.ask(pp.SearchAsk(limit=2, driver="b"))   # b saw one left and asked too
    assert not second.exhausted and raced.exhausted
    trials = a.study.get_trials(deepcopy=False)
    assert [t.number for t in trials if OVER_BUDGET_ATTR in t.user_attrs] == [2]
    assert trials[2].state == optuna.trial.TrialState.FAIL
    assert a.counts() == {"complete": 0, "pruned": 0, "failed": 0, "running": 2}
    # the budget still holds for both, and the over-budget trial is in no summary
    assert a.ask(pp.SearchAsk(limit=2, driver="a")).exhausted and b.ask(pp.SearchAsk(limit=2, driver="b")).exhausted
    a.tell(pp.SearchTell(number=first.number, outcome=pp.SEARCH_OUTCOME_COMPLETE, value=0.5))
    assert [p.number for p in a.summary().trials] == [first.number]


def test_a_failed_place_is_asked_again():
    """Failed configurations (a worker lost for good) give their place back; over-budget ones never held one."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        a = _driver(f"{d}/study.journal")
        one = a.ask(pp.SearchAsk(limit=1, driver="a"))
        assert a.ask(pp.SearchAsk(limit=1, driver="a")).exhausted
        a.tell(pp.SearchTell(number=one.number, outcome=pp.SEARCH_OUTCOME_FAILED))
        again = a.ask(pp.SearchAsk(limit=1, driver="a"))
        assert not again.exhausted and again.number == one.number + 1
