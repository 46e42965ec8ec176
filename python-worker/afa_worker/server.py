"""The gRPC server: binds loopback by default, requires a bearer token on every call (its own,
printed in the handshake, when none is given), prints one handshake line, serves until SIGTERM,
SIGINT, or (when the SDK spawned it) the parent's end of stdin closing; then drains and exits 0.
The handshake is the line channel's ``ready`` message (afa_worker/channel.py)."""

from __future__ import annotations

import dataclasses
import faulthandler
import hmac
import logging
import os
import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc

from afa_worker import channel
from afa_worker._gen.afa.v1 import afa_pb2_grpc as pbgrpc
from afa_worker._gen.afa.v1 import process_pb2 as pp
from afa_worker._gen.grpc.health.v1 import health_pb2_grpc as hgrpc
from afa_worker.auth import new_token
from afa_worker.checkpoint import CheckpointPolicy
from afa_worker.health import NOT_SERVING, SERVING, HealthServicer
from afa_worker.lifeline import watch_stdin
from afa_worker.decoding import DecodeGuard
from afa_worker.session_limits import SessionLimits
from afa_worker.servicer import AfaWorkerServicer
from afa_worker.streams import MAX_STREAMS, MAX_UPLOADS, UNARY_RESERVE, StreamLimiter
from afa_worker.weight_store import DatasetStore, WeightStore

__all__ = ["ServerOptions", "WorkerServer", "MAX_MESSAGE_BYTES"]

SERVICE_NAME = "afa.v1.AfaWorker"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
#: After the grace period of a stop, how long the process may still take before it exits anyway.
HARD_EXIT_SECONDS = 5.0


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 0
    token: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    #: Threads serving calls: every allowed stream, plus a reserve for unary calls and health checks.
    max_workers: int = MAX_STREAMS + MAX_UPLOADS + UNARY_RESERVE
    #: Where SaveCheckpoint writes relative paths; absolute ones must be under it or `allow_write`.
    checkpoint_dir: str = ""
    allow_write: tuple[str, ...] = ()
    allow_write_anywhere: bool = False
    grace_seconds: float = 5.0
    #: The weight store (uploaded and stored weights by sha256); "" = weight_store.default_store_dir().
    weight_store_dir: str = ""
    #: The packed data set store; "" = datasets/ beside the weight store (its parent's), else the cache's.
    dataset_store_dir: str = ""
    #: Sessions at once, and seconds without a call before one is closed (None: $AFA_MAX_SESSIONS,
    #: $AFA_SESSION_IDLE_SECONDS, else 64 and 3600; an idle limit of 0 never expires).
    max_sessions: int | None = None
    session_idle_seconds: float | None = None


class _TokenInterceptor(grpc.ServerInterceptor):
    """Every RPC must carry ``authorization: Bearer <token>``; compared in constant time."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

        def deny(_request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token (set AFA_TOKEN or the token option)")

        def deny_upload(request_iterator, context):
            deny(None, context)

        self._deny = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.unary_stream_rpc_method_handler(deny)
        self._deny_upload = grpc.stream_unary_rpc_method_handler(deny_upload)

    def intercept_service(self, continuation, handler_call_details):
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = str(metadata.get("authorization", "")).encode()
        if hmac.compare_digest(given, self._expected):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is not None and handler.request_streaming:
            return self._deny_upload
        return self._deny_stream if handler is not None and handler.response_streaming else self._deny


def default_checkpoint_dir() -> Path:
    """A folder under the worker's cache: $AFA_HOME, else ~/.cache/afa-transfer."""
    home = os.environ.get("AFA_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                                      "afa-transfer")
    return Path(home) / "worker-checkpoints"


def _checkpoint_policy(options: ServerOptions) -> CheckpointPolicy:
    root = Path(options.checkpoint_dir).expanduser() if options.checkpoint_dir else default_checkpoint_dir()
    return CheckpointPolicy(Path(os.path.realpath(root)), tuple(Path(p).expanduser() for p in options.allow_write),
                            options.allow_write_anywhere)


class WorkerServer:
    def __init__(self, options: ServerOptions):
        if options.host not in LOOPBACK and not options.token:
            raise ValueError(f"binding {options.host} exposes the worker beyond this machine: pass a token "
                             "(AFA_TOKEN or --token-file; and --tls-cert/--tls-key) or bind 127.0.0.1")
        #: True when no token was given and the worker made its own (printed in the handshake).
        self.token_generated = not options.token
        if self.token_generated:
            options = dataclasses.replace(options, token=new_token())
        self.options = options
        self.streams = StreamLimiter()
        # The token first: a client without it takes no stream slot.
        # Token first (nothing unauthenticated is even decoded), the stream bounds, then lenient decoding.
        interceptors = [_TokenInterceptor(options.token), self.streams, DecodeGuard()]
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=options.max_workers), interceptors=interceptors,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
        store = WeightStore(Path(options.weight_store_dir).expanduser()) if options.weight_store_dir else WeightStore()
        datasets = DatasetStore(Path(options.dataset_store_dir).expanduser() if options.dataset_store_dir else
                                (store.root.parent / "datasets" if options.weight_store_dir else None))
        self.servicer = AfaWorkerServicer(_checkpoint_policy(options), store, datasets,
                                          SessionLimits(options.max_sessions, options.session_idle_seconds))
        self.health = HealthServicer([SERVICE_NAME])
        pbgrpc.add_AfaWorkerServicer_to_server(self.servicer, self.server)
        hgrpc.add_HealthServicer_to_server(self.health, self.server)
        address = f"{options.host}:{options.port}"
        if options.tls_cert:
            with open(options.tls_cert, "rb") as c, open(options.tls_key, "rb") as k:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
            self.port = self.server.add_secure_port(address, creds)
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind {address}")
        self._stop = threading.Event()
        #: Whether a stop ends the process for certain (the `serve` command; not in-process servers).
        self.hard_exit = False

    def start(self) -> None:
        self.server.start()
        self.health.set_all(SERVING)

    def ready_detail(self) -> pp.ServeReady:
        """Where it serves, for the ready message (the token only when it made its own: the only way
        its client can learn it)."""
        return pp.ServeReady(host=self.options.host, port=self.port, tls=bool(self.options.tls_cert),
                             token=self.options.token if self.token_generated else "")

    def request_stop(self, *_args) -> None:
        """Begins a graceful stop, with a hard exit as its backstop: work stuck in one long torch call
        cannot keep the process (and its GPU memory) past the grace period plus HARD_EXIT_SECONDS."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self.hard_exit:
            timer = threading.Timer(self.options.grace_seconds + HARD_EXIT_SECONDS, _hard_exit)
            timer.daemon = True
            timer.start()

    def wait(self) -> None:
        while not self._stop.wait(timeout=0.5):
            pass

    def shutdown(self) -> None:
        """NOT_SERVING first (load balancers and the SDK stop sending), then cancel running stages,
        drain in-flight calls within the grace period."""
        self.health.set_all(NOT_SERVING)
        self.servicer.cancel_all()
        self.health.close()
        self.server.stop(self.options.grace_seconds).wait()


def _hard_exit() -> None:
    logging.getLogger("afa_worker").error("still running %.0f s after the grace period: exiting now", HARD_EXIT_SECONDS)
    logging.shutdown()
    os._exit(1)


def serve(options: ServerOptions, exit_with_stdin: bool = False) -> int:
    # The log goes to stderr: the SDK keeps its tail for errors (a crash report names the last stage).
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s afa-worker %(levelname)s %(message)s")
    # A native fault (SIGSEGV, SIGABRT, ...) prints the faulting thread's Python stack to stderr before
    # the process dies, so the crash report's tail shows the code that was running (every thread's
    # stacks would push the log's session and stage lines out of the tail the SDK keeps).
    faulthandler.enable(file=sys.stderr, all_threads=False)
    server = WorkerServer(options)
    server.hard_exit = True
    signal.signal(signal.SIGTERM, server.request_stop)
    signal.signal(signal.SIGINT, server.request_stop)
    server.start()
    channel.ready(serve=server.ready_detail())
    logging.getLogger("afa_worker").info("serving on %s:%d (pid %d)", options.host, server.port, os.getpid())
    if exit_with_stdin:
        watch_stdin(server.request_stop)
    server.wait()
    logging.getLogger("afa_worker").info("shutting down: NOT_SERVING, cancelling stages, draining")
    server.shutdown()
    return 0
