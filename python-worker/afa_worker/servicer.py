"""The AfaWorker servicer: sessions by id, errors mapped to status codes, stages cancelled when
the client goes away or the server shuts down."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import torch

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker._gen.afa.v1 import afa_pb2_grpc as pbgrpc
from afa_worker.cancel import Cancelled, cancellable
from afa_worker.checkpoint import CheckpointPolicy, checkpoint_bytes, save_checkpoint
from afa_worker.compute import ComputeThread
from afa_worker.data import DataContext
from afa_worker.errors import BusyError, NotFoundError, SpecError, clip
from afa_worker.inference import InferenceSession
from afa_worker.info import worker_info
from afa_worker.limits import check_max
from afa_worker.model_card import card_json
from afa_worker.model_rpcs import ModelRpcs, card_for
from afa_worker.onnx_export import ExportRefused
from afa_worker.session import Session, create_session
from afa_worker.session_limits import SessionLimits, TooManySessions
from afa_worker.stage_plan import parse_stage
from afa_worker.status import abort_invalid_argument
from afa_worker.trainer import evaluate, run_stage
from afa_worker.streams import UPLOAD_IDLE_SECONDS, idle_limited
from afa_worker.weight_store import ContentStore, DatasetStore, StoreFull, WeightStore

__all__ = ["AfaWorkerServicer"]

_SPLITS = {pb.SPLIT_VAL: "val", pb.SPLIT_TEST: "test", pb.SPLIT_TRAIN: "train"}
_log = logging.getLogger("afa_worker")
_IDLE_COMPUTE_THREADS = 4
# A cancelled stage ends at its next step or check; a step longer than this is not a stage to wait on.
_CLOSE_WAIT_SECONDS = 30.0
#: Seconds between progress events of one phase (its last one always goes).
PROGRESS_INTERVAL = 0.25


@contextmanager
def _status_mapping(context: grpc.ServicerContext):
    """Known errors become their status code with the message; the worker keeps serving."""
    try:
        yield
    except SpecError as exc:
        _log.info("rejected: %s", exc)
        abort_invalid_argument(context, exc)
    except NotFoundError as exc:
        context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    except BusyError as exc:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    except MemoryError as exc:
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"out of memory: {exc}")
    except Cancelled as exc:
        context.abort(grpc.StatusCode.CANCELLED, str(exc))
    except ExportRefused as exc:
        context.abort(grpc.StatusCode.ABORTED, str(exc))
    except (StoreFull, TooManySessions) as exc:
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))


class AfaWorkerServicer(ModelRpcs, pbgrpc.AfaWorkerServicer):
    def __init__(self, checkpoints: CheckpointPolicy, store: WeightStore | None = None, datasets: DatasetStore | None = None,
                 limits: SessionLimits | None = None) -> None:
        self._checkpoints = checkpoints
        self._store = store or WeightStore()
        self._datasets = datasets or DatasetStore()
        self._sessions: dict[str, Session] = {}
        # Each session's torch work runs on its own thread (see compute.py). Closed sessions hand
        # theirs back for the next session, which then starts on warm buffers and thread teams.
        self._compute: dict[str, ComputeThread] = {}
        self._idle_compute: list[ComputeThread] = []
        self._guard = threading.Lock()
        self._cancels: set[threading.Event] = set()
        self.shutting_down = threading.Event()
        self.limits = limits or SessionLimits()
        self.limits.watch(self.expire_idle, self.shutting_down)

    # -------------------------------------------------------------- helpers

    _status = staticmethod(_status_mapping)

    def _session(self, session_id: str) -> tuple[Session | InferenceSession, ComputeThread]:
        with self._guard:
            session = self._sessions.get(session_id)
            compute = self._compute.get(session_id)
        if session is None or compute is None:
            raise NotFoundError(f"session_id: no session {clip(session_id, 64)!r} (closed, or created on another worker, "
                                "or closed after it went unused for the worker's idle limit)")
        self.limits.touch(session_id)
        return session, compute

    def _training(self, session_id: str, what: str) -> tuple[Session, ComputeThread]:
        """A training session (not LoadModel's inference-only one, which has no data or source)."""
        session, compute = self._session(session_id)
        if isinstance(session, InferenceSession):
            raise SpecError("session_id", f"session {session.id} was made by LoadModel to predict: it answers Predict and "
                                          f"ExportOnnx, not {what}")
        self._check_usable(session)
        return session, compute

    @staticmethod
    def _check_usable(session) -> None:
        """FAILED_PRECONDITION for a session a divergence left without finite weights (CloseSession still works)."""
        if getattr(session, "unusable", ""):
            raise BusyError(f"session {session.id[:8]} is unusable: {session.unusable}; close it and create another")

    def _new_session(self, factory) -> tuple:
        """A session made by ``factory`` on a compute thread of its own (a warm idle one when there is one)."""
        with self._guard:
            self.limits.reserve(len(self._sessions))
            compute = self._idle_compute.pop() if self._idle_compute else ComputeThread()
        try:
            session = compute.call(factory)
        except BaseException:
            self.limits.abandoned()
            self._release_compute(compute)
            raise
        with self._guard:
            self._sessions[session.id] = session
            self._compute[session.id] = compute
        self.limits.admitted(session.id)
        return session, compute

    def _drop(self, session, compute: ComputeThread) -> None:
        """Forgets a session whose lock the caller holds, and hands its compute thread back."""
        with self._guard:
            self._sessions.pop(session.id, None)
            self._compute.pop(session.id, None)
        self.limits.forget(session.id)
        self._release_compute(compute)

    def expire_idle(self) -> list[str]:
        """Closes the sessions no call has used for the idle limit (never one running a stage); returns their ids."""
        closed = []
        for session_id, idle in self.limits.idle():
            with self._guard:
                session, compute = self._sessions.get(session_id), self._compute.get(session_id)
            if session is None or compute is None or not session.lock.acquire(blocking=False):
                continue
            try:
                if session_id not in {sid for sid, _ in self.limits.idle()}:
                    continue  # a call came in meanwhile
                self._drop(session, compute)
            finally:
                session.lock.release()
            closed.append(session_id)
            _log.info("session %s: closed after %.0f s without a call (the idle limit is %g s, $AFA_SESSION_IDLE_SECONDS)",
                      session_id[:8], idle, self.limits.idle_seconds)
        return closed

    def _release_compute(self, compute: ComputeThread) -> None:
        with self._guard:
            if len(self._idle_compute) < _IDLE_COMPUTE_THREADS:
                self._idle_compute.append(compute)
                return
        compute.close()

    def cancel_all(self) -> None:
        """Shutdown: every running stage stops at its next step."""
        self.shutting_down.set()
        with self._guard:
            for event in self._cancels:
                event.set()

    @contextmanager
    def _cancel_on_exit(self, context: grpc.ServicerContext):
        """An event set when the client goes away or the worker shuts down, for the call's work."""
        cancel = threading.Event()
        context.add_callback(cancel.set)
        with self._guard:
            self._cancels.add(cancel)
        if self.shutting_down.is_set():
            cancel.set()
        try:
            yield cancel
        finally:
            with self._guard:
                self._cancels.discard(cancel)

    @contextmanager
    def _exclusive(self, session: Session, what: str):
        if not session.lock.acquire(blocking=False):
            raise BusyError(f"session {session.id} is busy running stage {clip(session.running_stage or '')!r}; "
                            f"{what} waits until it ends (or cancel it)")
        try:
            yield
        finally:
            session.lock.release()
            self.limits.touch(session.id)  # a long stage's end counts as use: its idle time starts now

    # -------------------------------------------------------------- RPCs

    def GetInfo(self, request, context):  # noqa: N802
        with self._guard:
            active = len(self._sessions)
        return worker_info(active)

    def _open(self, request, context, progress) -> Session:
        """The session a request describes, on a compute thread of its own; ``progress`` sees its phases."""
        if self.shutting_down.is_set():
            context.abort(grpc.StatusCode.UNAVAILABLE, "the worker is shutting down")
        with self._guard:
            others_active = bool(self._sessions)
        with self._cancel_on_exit(context) as cancel:
            data = DataContext(self._datasets, torch.get_num_threads(), progress)
            session, _compute = self._new_session(lambda: _create_cancellably(request, cancel, others_active, self._store, data))
        # Every session's model, input and layout, in the log: a crash's stderr tail says what was running.
        _log.info("session %s: %s (%s); %d train / %d val images, source %s", session.id[:8], session.describe(),
                  session.layout.reason if session.layout else "", len(session.data.train), len(session.data.val) if session.data.val else 0,
                  request.source_weights or (f"sha256 {request.source_weights_sha256[:12]}" if request.source_weights_sha256 else "none"))
        return session

    def CreateSession(self, request, context):  # noqa: N802
        with _status_mapping(context):
            return _created(self._open(request, context, lambda _p: None))

    def OpenSession(self, request, context) -> Iterator[pb.SessionEvent]:  # noqa: N802
        """CreateSession, streaming the phases' progress (at most a few events a second) before the session."""
        with _status_mapping(context):
            events: queue.SimpleQueue = queue.SimpleQueue()
            outcome: dict = {}

            def create() -> None:
                try:
                    outcome["session"] = self._open(request, context, events.put)
                except BaseException as exc:  # noqa: BLE001 - raised below, on the RPC's thread
                    outcome["error"] = exc
                finally:
                    events.put(None)

            threading.Thread(target=create, name="afa-open-session", daemon=True).start()
            last = 0.0
            while (item := events.get()) is not None:
                if item.finished or time.monotonic() - last >= PROGRESS_INTERVAL:
                    last = time.monotonic()
                    yield pb.SessionEvent(progress=item)
            if "error" in outcome:
                raise outcome["error"]
            yield pb.SessionEvent(created=_created(outcome["session"]))

    def RunStage(self, request, context) -> Iterator[pb.StageEvent]:  # noqa: N802
        with _status_mapping(context):
            session, compute = self._training(request.session_id, "RunStage")
            plan = parse_stage(request.stage)  # every field validated before anything runs
            with self._exclusive(session, "RunStage"), self._cancel_on_exit(context) as cancel:
                session.running_stage, session.stage_cancel = request.stage.name, cancel
                _log.info("session %s: stage %r started (%d steps, %s)", session.id[:8], clip(plan.name), plan.iterations,
                          plan.regularizer.kind)
                try:
                    for event in compute.stream(lambda: run_stage(session, plan, cancel), cancel.set):
                        if event.WhichOneof("event") == "summary":
                            _log.info("session %s: stage %r ended: %s after %d steps%s", session.id[:8], clip(event.summary.name),
                                      pb.StageStatus.Name(event.summary.status), event.summary.steps_completed,
                                      f" ({event.summary.message})" if event.summary.message else "")
                        yield event
                finally:
                    session.running_stage, session.stage_cancel = None, None

    def Evaluate(self, request, context):  # noqa: N802
        with _status_mapping(context):
            session, compute = self._training(request.session_id, "Evaluate")
            name = _SPLITS.get(request.split)
            if name is None:
                raise SpecError("split", f"unknown split {request.split}", list(_SPLITS.values()))
            split = getattr(session.data, name)
            if split is None or len(split) == 0:
                raise SpecError("split", f"this session's data has no {name} split")
            batch_size = check_max(request.batch_size, "batch_size", "eval_batch_size") or 500
            with self._exclusive(session, "Evaluate"):
                loss, acc = compute.call(evaluate, session, split, batch_size)
            return pb.EvaluateResponse(split=name, loss=loss, accuracy=acc, count=len(split))

    def PromoteTargetToSource(self, request, context):  # noqa: N802
        with _status_mapping(context):
            session, compute = self._training(request.session_id, "PromoteTargetToSource")
            with self._exclusive(session, "PromoteTargetToSource"):
                copied = compute.call(session.promote_target_to_source)
            return pb.PromoteTargetToSourceResponse(tensors_copied=copied)

    def SaveCheckpoint(self, request, context):  # noqa: N802
        with _status_mapping(context):
            session, compute = self._training(request.session_id, "SaveCheckpoint")
            card = card_for(session, request)
            if request.to_weight_store:
                if request.path:
                    raise SpecError("path", "give a path or to_weight_store, not both")
                with self._exclusive(session, "SaveCheckpoint"):
                    data = compute.call(checkpoint_bytes, session.target, card_json(card))
                digest, path = self._store.put_bytes(data)
                return pb.SaveCheckpointResponse(path=str(path), bytes=len(data), sha256=digest, card=card)
            if not request.path:
                raise SpecError("path", "a checkpoint path is required (or to_weight_store)")
            origin = session.provenance
            metadata = {
                "backbone": {"name": origin.backbone, "in_channels": session.data.in_channels,
                             "width": origin.width, "depth": origin.depth},
                "num_classes": session.data.num_classes, "class_names": session.data.class_names,
                "head": session.head_name, "layers": session.layers,
                "spec": origin.spec,
            }
            with self._exclusive(session, "SaveCheckpoint"):
                path, meta, size, digest = compute.call(save_checkpoint, session.target, request.path, metadata,
                                                        self._checkpoints, card_json(card))
            return pb.SaveCheckpointResponse(path=path, metadata_path=meta, bytes=size, sha256=digest, card=card)

    def HasWeights(self, request, context):  # noqa: N802
        with _status_mapping(context):
            return _has(self._store, request.sha256)

    def PutWeights(self, request_iterator, context):  # noqa: N802
        with _status_mapping(context):
            return _put(self._store, request_iterator, context, "weights")

    def HasDataset(self, request, context):  # noqa: N802
        with _status_mapping(context):
            return _has(self._datasets, request.sha256)

    def PutDataset(self, request_iterator, context):  # noqa: N802
        with _status_mapping(context):
            return _put(self._datasets, request_iterator, context, "data set")

    def GetWeights(self, request, context):  # noqa: N802
        with _status_mapping(context):
            size = self._store.size(request.sha256)
            first = True
            for block in self._store.read(request.sha256):
                yield pb.WeightsChunk(sha256=request.sha256 if first else "", total_bytes=size if first else 0, data=block)
                first = False

    def CloseSession(self, request, context):  # noqa: N802
        """Frees the session; a stage it is running is cancelled first (it stops at its next step)."""
        with _status_mapping(context):
            session, compute = self._session(request.session_id)
            running = session.stage_cancel
            if running is not None:
                running.set()
            if not session.lock.acquire(timeout=_CLOSE_WAIT_SECONDS):
                raise BusyError(f"session {session.id} is still running stage {clip(session.running_stage or '')!r} "
                                f"{_CLOSE_WAIT_SECONDS:.0f} s after it was cancelled; close it again later")
            try:
                self._drop(session, compute)
            finally:
                session.lock.release()
            _log.info("session %s: closed%s", session.id[:8], " (its running stage cancelled)" if running else "")
            return pb.CloseSessionResponse()


def _has(store: ContentStore, sha256: str) -> pb.HasWeightsResponse:
    size = store.size(sha256)
    return pb.HasWeightsResponse(present=size is not None, bytes=size or 0, uploading=size is None and store.uploading(sha256))


def _put(store: ContentStore, request_iterator, context: grpc.ServicerContext, what: str) -> pb.PutWeightsResponse:
    chunks = ((c.sha256, c.total_bytes, c.data) for c in idle_limited(request_iterator, context, UPLOAD_IDLE_SECONDS))
    sha256, size, present, in_progress = store.put(chunks)
    # In progress: nothing more is read; the client asks Has* again until the file is present.
    _log.info("%s %s: %s (%d bytes)", what, sha256[:12], "being uploaded by another client" if in_progress else
              "already stored" if present else "stored", size)
    return pb.PutWeightsResponse(sha256=sha256, bytes=size, already_present=present, in_progress=in_progress)


def _create_cancellably(request: pb.CreateSessionRequest, cancel: threading.Event, others_active: bool,
                        store: WeightStore, data: DataContext) -> Session:
    with cancellable(cancel):
        return create_session(request, others_active, store, data)


def _created(session: Session) -> pb.CreateSessionResponse:
    backbone, head = session.parameter_counts()
    return pb.CreateSessionResponse(
        session_id=session.id,
        layers=[pb.LayerInfo(name=n, shape=list(s)) for n, s in session.layer_shapes.items()],
        backbone_parameters=backbone, head_parameters=head, num_classes=session.data.num_classes,
        train_size=len(session.data.train), val_size=len(session.data.val) if session.data.val else 0,
        test_size=len(session.data.test) if session.data.test else 0, device=str(session.device),
        has_source=session.source is not None, precision=session.precision.describe(),
        source_sha256=session.source_sha256, class_names=session.data.class_names, data_sha256=session.data_sha256,
        phases=session.phases, bad_files_skipped=session.bad_files_skipped, backbone=session.backbone,
        input_shape=list(session.input_shape), memory_format=session.layout.name if session.layout else "channels_last",
        layout_reason=session.layout.reason if session.layout else "")
