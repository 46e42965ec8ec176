"""``python -m afa_worker search``: an Optuna study the SDK's sweep engine asks for configurations.

Optuna's language-neutral door is ask-and-tell (its samplers run in the client, not in a server),
so the sampler runs here, in Python, and the TypeScript sweep asks this process over the line
channel (proto/afa/v1/process.proto: SearchRequest in, SearchResponse out, one per request):

- ``ask``: the next configuration, its values drawn by the study's sampler (TPE, GP, CMA-ES,
  random), or fixed by the SDK (grid and random sweeps pruned by Optuna); none once the study holds
  the budget's count of trials. Values the study already holds as completed are told that trial's
  value at once and marked a repeat, so no driver runs a configuration twice.
- ``report`` / pruning: a validation point of one of the configuration's trials, answered with the
  study's pruner's verdict (successive halving, Hyperband, median).
- ``tell``: the configuration's outcome (its metric folded over its seeds, or pruned, or failed).
- ``running``: trials a resumed study holds as asked but never told (the driver was interrupted),
  so the SDK re-runs them, with the same values, instead of asking anew.
- ``summary``: every finished trial in order and the parameter importance, for ``afa report``.

The study is an ordinary Optuna study in its storage: a journal file (Optuna's recommendation for
several processes on one file system: appends under a lock, no database server; SQLite's locking
serialises writers and breaks on network file systems) or a database URL (``postgresql+psycopg://``)
several drivers on several machines share; ``optuna-dashboard`` and Optuna's plots open it."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from typing import IO

from afa_worker import channel
from afa_worker._gen.afa.v1 import process_pb2 as pp

__all__ = ["add_arguments", "main", "serve_requests"]

SAMPLERS = ("tpe", "gp", "cmaes", "random", "fixed")
#: The user attribute naming the driver that asked a trial.
DRIVER_ATTR = "afa_driver"
#: Set on a trial asked past the budget by a driver that raced another for the last place: it is
#: failed at once, never run, and left out of every count and summary.
OVER_BUDGET_ATTR = "afa_over_budget"
PRUNERS = ("none", "median", "asha", "hyperband")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", required=True, help="a journal file's path, or a database URL (postgresql+psycopg://...)")
    parser.add_argument("--study", required=True, help="the study's name (the sweep's)")
    parser.add_argument("--space", required=True, help="the dimensions as JSON: name -> {kind: categorical|float|int, ...}")
    parser.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument("--direction", choices=("maximize", "minimize"), default="maximize")
    parser.add_argument("--pruner", choices=PRUNERS, default="none")
    parser.add_argument("--warmup-steps", type=int, default=0, help="steps before the pruner may stop a trial")
    parser.add_argument("--min-trials", type=int, default=3, help="finished trials the median pruner waits for")
    parser.add_argument("--max-steps", type=int, default=0, help="a trial's full length in steps (Hyperband's max resource)")
    parser.add_argument("--reduction-factor", type=int, default=3, help="successive halving's and Hyperband's eta")
    parser.add_argument("--startup-trials", type=int, default=10, help="trials TPE and GP draw at random before they model")


def _distributions(space: dict):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: PLC0415

    out = {}
    for name, d in space.items():
        if d["kind"] == "categorical":
            out[name] = CategoricalDistribution(list(range(int(d["n"]))))  # indices into the sweep's values
        elif d["kind"] == "float":
            out[name] = FloatDistribution(float(d["low"]), float(d["high"]), log=bool(d.get("log")))
        elif d["kind"] == "int":
            out[name] = IntDistribution(int(d["low"]), int(d["high"]))
        else:
            raise ValueError(f"dimension {name!r}: unknown kind {d['kind']!r}")
    return out


def _sampler(args):
    import optuna  # noqa: PLC0415

    if args.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=args.startup_trials, constant_liar=True)
    if args.sampler == "gp":
        return optuna.samplers.GPSampler(seed=args.seed, n_startup_trials=args.startup_trials)
    if args.sampler == "cmaes":
        try:
            import cmaes  # noqa: F401, PLC0415 - Optuna's CMA-ES sampler imports it only at its first CMA-ES draw
        except ImportError as exc:
            raise ImportError("--search cmaes needs the cmaes package in the worker's Python (pip install cmaes)") from exc
        return optuna.samplers.CmaEsSampler(seed=args.seed, n_startup_trials=args.startup_trials)
    return optuna.samplers.RandomSampler(seed=args.seed)  # "random", and "fixed" (every value given)


def _pruner(args):
    import optuna  # noqa: PLC0415

    warmup = max(1, args.warmup_steps)
    if args.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=args.min_trials, n_warmup_steps=args.warmup_steps)
    if args.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=warmup, reduction_factor=args.reduction_factor)
    if args.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=warmup, max_resource=args.max_steps or "auto",
                                              reduction_factor=args.reduction_factor)
    return optuna.pruners.NopPruner()


def _storage(url: str):
    import optuna  # noqa: PLC0415
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock  # noqa: PLC0415

    if "://" in url:
        return optuna.storages.RDBStorage(url)
    # The open(2)-based lock works where symlinks are not atomic (network file systems).
    return optuna.storages.JournalStorage(JournalFileBackend(url, lock_obj=JournalFileOpenLock(url)))


#: Tries at opening a database storage: drivers that start together race to create Optuna's schema
#: and the study (an IntegrityError for the one that loses, or PostgreSQL's DuplicateTable, which
#: SQLAlchemy raises as a ProgrammingError "relation ... already exists"), and a later try finds them made.
OPEN_TRIES = 5


def _lost_a_creation_race(exc: Exception) -> bool:
    name = type(exc).__name__
    if name in ("IntegrityError", "OperationalError", "DuplicatedStudyError"):
        return True
    return name == "ProgrammingError" and "already exists" in str(exc)


def _opened(url: str):
    for attempt in range(1, OPEN_TRIES + 1):
        try:
            storage = _storage(url)
            storage.get_all_studies()
            return storage
        except Exception as exc:  # noqa: BLE001 - sqlalchemy's IntegrityError or OperationalError, by name below
            if attempt == OPEN_TRIES or not _lost_a_creation_race(exc):
                raise
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _shown(url: str) -> str:
    """The storage as the ready message shows it: a URL without its password."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


class _Study:
    """The study and the live Trial objects of what this process asked (or found running)."""

    def __init__(self, args):
        import optuna  # noqa: PLC0415

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.space = _distributions(json.loads(args.space))
        storage = _opened(args.storage)
        # A resumed study's sampler must not start its random draws where the last process started
        # them (it would propose the same configurations again): its seed moves on by the trials held.
        held = next((len(storage.get_all_trials(s._study_id, deepcopy=False)) for s in storage.get_all_studies()  # noqa: SLF001
                     if s.study_name == args.study), 0)
        args.seed += held
        for attempt in range(1, OPEN_TRIES + 1):
            try:
                self.study = optuna.create_study(study_name=args.study, storage=storage, sampler=_sampler(args),
                                                 pruner=_pruner(args), direction=args.direction, load_if_exists=True)
                break
            except Exception as exc:  # noqa: BLE001 - two drivers creating the study at once
                if attempt == OPEN_TRIES or type(exc).__name__ not in ("IntegrityError", "DuplicatedStudyError"):
                    raise
                time.sleep(0.2 * attempt)
        self.trials: dict[int, object] = {}

    def counts(self) -> dict[str, int]:
        states = self.optuna.trial.TrialState
        trials = [t for t in self.study.get_trials(deepcopy=False) if OVER_BUDGET_ATTR not in t.user_attrs]
        return {name: sum(t.state == state for t in trials) for name, state in
                (("complete", states.COMPLETE), ("pruned", states.PRUNED), ("failed", states.FAIL), ("running", states.RUNNING))}

    def _trial(self, number: int):
        if number not in self.trials:
            frozen = next((t for t in self.study.get_trials(deepcopy=False) if t.number == number), None)
            if frozen is None:
                raise ValueError(f"the study has no trial {number}")
            self.trials[number] = self.optuna.trial.Trial(self.study, frozen._trial_id)  # noqa: SLF001 - resumed trials
        return self.trials[number]

    def _counted(self, before: int | None = None) -> int:
        """Trials that hold a place in the budget (numbered below ``before`` when given). Failed
        trials do not: a configuration that failed (its worker lost for good) is re-asked."""
        fail = self.optuna.trial.TrialState.FAIL
        return sum(1 for t in self.study.get_trials(deepcopy=False)
                   if t.state != fail and (before is None or t.number < before))

    def ask(self, request: pp.SearchAsk) -> pp.SearchAsked:
        if request.limit and self._counted() >= request.limit:
            return pp.SearchAsked(exhausted=True)
        if request.fixed:
            self.study.enqueue_trial({k: json.loads(v) for k, v in request.fixed.items()}, skip_if_exists=False)
        trial = self.study.ask(self.space)
        # Drivers sharing a study can both see one place left and both ask. The storage numbers trials
        # in one order for everyone, so the places go by number: a trial with the budget's count of
        # counted trials before it is over budget, whichever driver asked it.
        if request.limit and self._counted(before=trial.number) >= request.limit:
            trial.set_user_attr(OVER_BUDGET_ATTR, True)
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            return pp.SearchAsked(exhausted=True)
        trial.set_user_attr(DRIVER_ATTR, request.driver)
        params = {k: json.dumps(v) for k, v in trial.params.items()}
        earlier = self._finished_as(trial)
        if earlier is not None:
            # Values that already finished (a sampler proposes a configuration again; two drivers
            # sharing the study propose the same one): told that value, not run a second time.
            self.study.tell(trial, earlier.value)
            return pp.SearchAsked(number=trial.number, params=params, repeat_of=earlier.number)
        self.trials[trial.number] = trial
        return pp.SearchAsked(number=trial.number, params=params)

    def _finished_as(self, trial):
        """The completed trial of the study with ``trial``'s values, if one is."""
        complete = self.optuna.trial.TrialState.COMPLETE
        return next((t for t in self.study.get_trials(deepcopy=False, states=(complete,))
                     if t.number != trial.number and t.params == trial.params), None)

    def tell(self, request: pp.SearchTell) -> pp.SearchTold:
        states = self.optuna.trial.TrialState
        trial = self._trial(request.number)
        if request.outcome == pp.SEARCH_OUTCOME_COMPLETE:
            self.study.tell(trial, float(request.value))
        elif request.outcome == pp.SEARCH_OUTCOME_PRUNED:
            self.study.tell(trial, state=states.PRUNED)
        else:
            self.study.tell(trial, state=states.FAIL)
        self.trials.pop(request.number, None)
        return pp.SearchTold()

    def report(self, request: pp.SearchReport) -> pp.SearchReported:
        trial = self._trial(request.number)
        step = int(request.step)
        if step not in trial.storage.get_trial(trial._trial_id).intermediate_values:  # noqa: SLF001 - the first seed's point counts
            trial.report(float(request.value), step)
        if trial.should_prune():
            return pp.SearchReported(prune=True, reason=f"the {type(self.study.pruner).__name__} stopped it at step {step} "
                                                        f"(value {request.value:.4g})")
        return pp.SearchReported(prune=False)

    def running(self) -> pp.SearchRunningTrials:
        states = self.optuna.trial.TrialState
        return pp.SearchRunningTrials(trials=[pp.SearchAsked(number=t.number, params={k: json.dumps(v) for k, v in t.params.items()},
                                                             driver=str(t.user_attrs.get(DRIVER_ATTR, "")))
                                              for t in self.study.get_trials(deepcopy=False) if t.state == states.RUNNING])

    def summary(self) -> pp.SearchSummary:
        states = self.optuna.trial.TrialState
        outcome = {states.COMPLETE: pp.SEARCH_OUTCOME_COMPLETE, states.PRUNED: pp.SEARCH_OUTCOME_PRUNED, states.FAIL: pp.SEARCH_OUTCOME_FAILED}
        done = sorted((t for t in self.study.get_trials(deepcopy=False) if t.state in outcome and OVER_BUDGET_ATTR not in t.user_attrs),
                      key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number))
        points = [pp.SearchPoint(number=t.number, outcome=outcome[t.state], value=t.value if t.value is not None else math.nan) for t in done]
        importance = {}
        complete = [t for t in done if t.state == states.COMPLETE]
        if len(complete) >= 2 and len({json.dumps(t.params, sort_keys=True) for t in complete}) >= 2:
            try:
                importance = self.optuna.importance.get_param_importances(self.study)
            except (RuntimeError, ValueError) as exc:  # e.g. every completed value equal
                logging.getLogger("afa_worker").info("search: no parameter importance: %s", exc)
        return pp.SearchSummary(trials=points, importance={k: float(v) for k, v in importance.items()})


def _answer(study: _Study, request: pp.SearchRequest) -> pp.SearchResponse:
    which = request.WhichOneof("request")
    try:
        if which == "ask":
            return pp.SearchResponse(id=request.id, asked=study.ask(request.ask))
        if which == "tell":
            return pp.SearchResponse(id=request.id, told=study.tell(request.tell))
        if which == "report":
            return pp.SearchResponse(id=request.id, reported=study.report(request.report))
        if which == "running":
            return pp.SearchResponse(id=request.id, running=study.running())
        if which == "summary":
            return pp.SearchResponse(id=request.id, summary=study.summary())
        raise ValueError(f"an empty search request ({which})")
    except Exception as exc:  # noqa: BLE001 - the answer says why; the process goes on serving
        return pp.SearchResponse(id=request.id, error=pp.ProcessError(message=f"{type(exc).__name__}: {exc}"[:2000]))


def serve_requests(args, stdin: IO[str] | None = None, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    err = stderr or sys.stderr
    try:
        study = _Study(args)
    except ImportError as exc:
        hint = "" if "cmaes" in str(exc) else ": install the worker's search extra (`npx afa worker setup`, or pip install optuna scipy)"
        channel.error(f"{exc}{hint}", stdout)
        return 3
    except Exception as exc:  # noqa: BLE001 - a storage that cannot be opened, a study of another direction
        channel.error(f"cannot open the study {args.study!r} in {_shown(args.storage)}: {type(exc).__name__}: {exc}"[:2000], stdout)
        return 3
    counts = study.counts()
    channel.ready(stdout, search=pp.SearchReady(study=args.study, storage=_shown(args.storage), sampler=args.sampler,
                                                 pruner=args.pruner, **counts))
    for item in channel.inputs(stdin):
        if isinstance(item, channel.InputError) or item.WhichOneof("input") != "search":
            print(f"afa-worker search: skipped {item if isinstance(item, channel.InputError) else 'a non-search input'}", file=err, flush=True)
            continue
        channel.send(pp.ProcessMessage(search=_answer(study, item.search)), stdout)
    return 0


def main(args) -> int:
    return serve_requests(args)
