"""``python -m afa_worker serve``: the worker process the SDK spawns (or a user runs remotely)."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="afa-worker", description="PyTorch worker for the AFA transfer SDK")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the afa.v1 gRPC contract")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; others need --token)")
    serve.add_argument("--port", type=int, default=0, help="port (default 0: any free port, printed in the handshake)")
    serve.add_argument("--token", default="", help="require this bearer token (visible in ps: prefer $AFA_TOKEN or "
                                                   "--token-file; default: $AFA_TOKEN, else a new random one, "
                                                   "printed in the handshake)")
    serve.add_argument("--token-file", default="", help="read the bearer token from the first line of this file")
    serve.add_argument("--tls-cert", default="", help="PEM certificate chain for TLS")
    serve.add_argument("--tls-key", default="", help="PEM private key for TLS")
    serve.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    serve.add_argument("--exit-with-stdin", action="store_true", help="exit when stdin closes (set by the SDK)")
    serve.add_argument("--grace", type=float, default=5.0, help="seconds to drain calls on shutdown")
    serve.add_argument("--checkpoint-dir", default="", help="where SaveCheckpoint writes relative paths, and the only "
                                                             "place it writes absolute ones (default: "
                                                             "~/.cache/afa-transfer/worker-checkpoints)")
    serve.add_argument("--allow-write", action="append", default=[], help="a further directory SaveCheckpoint may "
                                                                         "write under (repeatable)")
    serve.add_argument("--allow-write-anywhere", action="store_true", help="SaveCheckpoint may write wherever this "
                                                                           "user can (the SDK's own local worker)")
    serve.add_argument("--weight-store", default="", help="where weights uploaded by hash are kept (default: "
                                                          "$AFA_CACHE/weights, else ~/.cache/afa-transfer/cache/weights)")
    serve.add_argument("--max-sessions", type=int, default=None, help="sessions at once (default: $AFA_MAX_SESSIONS, "
                                                                       "else 64)")
    serve.add_argument("--session-idle", type=float, default=None, help="seconds without a call before a session is "
                                                                         "closed; 0: never (default: "
                                                                         "$AFA_SESSION_IDLE_SECONDS, else 3600)")
    pool = sub.add_parser("ray-pool", help="run workers as Ray actors and report their addresses (for the SDK)")
    from afa_worker.ray_pool import add_arguments  # noqa: PLC0415

    add_arguments(pool)
    search = sub.add_parser("search", help="hold an Optuna study the SDK's sweep asks for configurations (for the SDK)")
    from afa_worker.search import add_arguments as add_search_arguments  # noqa: PLC0415

    add_search_arguments(search)
    sub.add_parser("version", help="print the worker and protocol versions")
    board = sub.add_parser("tensorboard", help="write TensorBoard event files from JSON lines on stdin (for the SDK)")
    board.add_argument("--logdir", required=True, help="the log directory; one subdirectory per run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        from afa_worker import PROTOCOL_VERSION, __version__  # noqa: PLC0415

        print(f"afa-worker {__version__} protocol {PROTOCOL_VERSION}")
        return 0
    if args.command == "ray-pool":
        from afa_worker.ray_pool import main as ray_pool_main  # noqa: PLC0415

        return ray_pool_main(args)
    if args.command == "search":
        from afa_worker.search import main as search_main  # noqa: PLC0415

        return search_main(args)
    if args.command == "tensorboard":
        from afa_worker.tensorboard_writer import main as tensorboard_main  # noqa: PLC0415

        return tensorboard_main(args.logdir)
    if bool(args.tls_cert) != bool(args.tls_key):
        print("afa-worker: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    # Imported late: torch takes a second or two, and `version` should not pay for it.
    from afa_worker.auth import read_token_file  # noqa: PLC0415
    from afa_worker.runtime import configure_torch  # noqa: PLC0415
    from afa_worker.server import ServerOptions, serve  # noqa: PLC0415

    try:
        token = args.token or (read_token_file(args.token_file) if args.token_file else os.environ.get("AFA_TOKEN", ""))
    except (OSError, ValueError) as exc:
        print(f"afa-worker: --token-file: {exc}", file=sys.stderr)
        return 2
    configure_torch(args.threads)
    try:
        return serve(ServerOptions(host=args.host, port=args.port, token=token, tls_cert=args.tls_cert,
                                   tls_key=args.tls_key, grace_seconds=args.grace, checkpoint_dir=args.checkpoint_dir,
                                   allow_write=tuple(args.allow_write), allow_write_anywhere=args.allow_write_anywhere,
                                   weight_store_dir=args.weight_store, max_sessions=args.max_sessions,
                                   session_idle_seconds=args.session_idle),
                     exit_with_stdin=args.exit_with_stdin)
    except (ValueError, OSError) as exc:
        print(f"afa-worker: {exc}", file=sys.stderr)
        return 2
