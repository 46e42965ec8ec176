"""``python -m afa_worker ray-pool``: workers as Ray actors, for the SDK's sweep engine.

The SDK spawns this driver (like a local worker) and stays the one scheduler; Ray only places and
restarts workers. Each actor runs the afa_worker gRPC server in its own process on whatever node
Ray chose, bound to that node's address with a fresh random token (a non-loopback bind never goes
without one). The driver tells the SDK every actor's address and token on the line channel
(afa_worker/channel.py: ``ready`` with the cluster, ``ray_worker`` per start of an actor,
``ray_worker_lost`` when one is unreachable or gone for good, ``error`` before exiting 1), again
whenever Ray restarted an actor (a new incarnation, on a new port and maybe another node), and
removes every actor when stdin closes (the SDK exited, even by SIGKILL), on SIGTERM or SIGINT.
Actors are owned by this driver, so Ray removes them too if the driver itself dies.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

from afa_worker import channel
from afa_worker._gen.afa.v1 import process_pb2 as pp
from afa_worker.lifeline import watch_stdin

__all__ = ["main", "add_arguments"]

#: Seconds between liveness probes of one actor.
PROBE_SECONDS = 0.5
#: Seconds to reach the cluster's GCS port before calling it unreachable.
CONNECT_SECONDS = 5.0
#: Seconds ray.init may take once the port answers.
INIT_SECONDS = 60.0
#: Workers one pool may ask for.
MAX_WORKERS = 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default="auto", help="the cluster: 'auto' ($RAY_ADDRESS or the cluster started "
                                                         "on this machine), host:port of its GCS, or 'local' (a "
                                                         "throwaway cluster for this pool)")
    parser.add_argument("--workers", type=int, default=1, help="worker actors to create")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0, help="Ray CPUs each actor reserves")
    parser.add_argument("--gpus-per-worker", type=float, default=-1.0, help="Ray GPUs each actor reserves (default: 1 "
                                                                           "where the cluster has GPUs, else 0)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per worker (default: its CPUs)")
    parser.add_argument("--max-restarts", type=int, default=-1, help="restarts per actor after its process or node "
                                                                     "died (-1: no limit)")
    parser.add_argument("--local-cpus", type=int, default=0, help="with --address local: CPUs of the throwaway "
                                                                  "cluster (default: this machine's)")


class WorkerActor:
    """One afa_worker gRPC server in this actor's process (wrapped with ray.remote at run time)."""

    def __init__(self, threads: int) -> None:
        import ray  # noqa: PLC0415

        from afa_worker.auth import new_token  # noqa: PLC0415
        from afa_worker.runtime import configure_torch  # noqa: PLC0415
        from afa_worker.server import ServerOptions, WorkerServer  # noqa: PLC0415

        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s afa-worker %(levelname)s %(message)s")
        configure_torch(threads)
        context = ray.get_runtime_context()
        host = ray.util.get_node_ip_address()
        self._server = WorkerServer(ServerOptions(host=host, port=0, token=new_token()))
        self._server.start()
        self._endpoint = {"address": f"{host}:{self._server.port}", "token": self._server.options.token,
                          "node_id": context.get_node_id(), "node_ip": host, "hostname": socket.gethostname(),
                          "pid": os.getpid(), "incarnation": uuid.uuid4().hex}

    def endpoint(self) -> dict:
        return self._endpoint


@dataclass
class _Slot:
    index: int
    actor: object
    pending: object | None = None
    incarnation: str = ""
    down: bool = False
    dead: bool = False
    next_probe: float = field(default_factory=time.monotonic)


def _resolve_address(address: str) -> str | None:
    """host:port of the cluster's GCS for 'auto' or an explicit address; None when none is known."""
    from ray._private import services  # noqa: PLC0415

    if address == "auto":
        found = os.environ.get("RAY_ADDRESS") or services.canonicalize_bootstrap_address(None)
        if not found or found == "auto":
            return None
        address = found
    return address


def _reachable(address: str) -> str | None:
    """None when a TCP connection to host:port opens, else why not."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS):
            return None
    except ValueError:
        return f"{address!r} is not host:port"
    except OSError as exc:
        return exc.strerror or str(exc)


def _connect(args: argparse.Namespace) -> str | None:
    """Connects ray; None on success, else the error message."""
    import ray  # noqa: PLC0415

    common = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if args.address == "local":
        ray.init(num_cpus=args.local_cpus or None, object_store_memory=128 << 20, **common)
        return None
    address = _resolve_address(args.address)
    if address is None:
        return ("no Ray cluster found: RAY_ADDRESS is unset and none was started on this machine (start one with "
                "`ray start --head`, give its address, or use --ray local for a throwaway one)")
    problem = _reachable(address) if not address.startswith("ray://") else None
    if problem:
        return f"cannot reach the Ray cluster at {address}: {problem}"
    done = threading.Event()
    timer = threading.Timer(INIT_SECONDS, lambda: done.is_set() or _die(f"connecting to the Ray cluster at {address} "
                                                                        f"took over {INIT_SECONDS:.0f} s"))
    timer.daemon = True
    timer.start()
    try:
        ray.init(address=address, **common)
    finally:
        done.set()
        timer.cancel()
    return None


def _die(message: str) -> None:
    channel.error(message)
    os._exit(1)


def _probe(slots: list[_Slot], stop: threading.Event) -> None:
    import ray  # noqa: PLC0415
    from ray.exceptions import GetTimeoutError, RayActorError  # noqa: PLC0415

    while not stop.is_set():
        now = time.monotonic()
        for slot in slots:
            if not slot.dead and slot.pending is None and now >= slot.next_probe:
                slot.pending = slot.actor.endpoint.remote()  # type: ignore[attr-defined]
        pending = [s.pending for s in slots if s.pending is not None]
        if not pending:
            stop.wait(PROBE_SECONDS)
            continue
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=PROBE_SECONDS)
        for slot in slots:
            if slot.pending is None or slot.pending not in ready:
                continue
            ref, slot.pending, slot.next_probe = slot.pending, None, time.monotonic() + PROBE_SECONDS
            try:
                endpoint = ray.get(ref, timeout=10)
            except (RayActorError, GetTimeoutError) as exc:
                if _actor_state(slot.actor) == "DEAD":  # restarts exhausted: it will not come back
                    slot.dead = True
                    _lost(slot, exc, gone=True)
                else:
                    _mark_down(slot, exc)
            else:
                if endpoint["incarnation"] != slot.incarnation:
                    slot.incarnation, slot.down = endpoint["incarnation"], False
                    channel.send(pp.ProcessMessage(ray_worker=pp.RayWorker(slot=slot.index, **endpoint)))


def _actor_state(actor) -> str:
    """ALIVE, RESTARTING, DEAD, ... as the cluster's control store (GCS) has it."""
    from ray._private import state  # noqa: PLC0415

    try:
        return str(state.actors(actor_id=actor._actor_id.hex()).get("State", ""))  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - unknown is not dead
        return ""


def _mark_down(slot: _Slot, exc: Exception) -> None:
    if not slot.down:
        slot.down = True
        _lost(slot, exc, gone=False)


def _lost(slot: _Slot, exc: Exception, gone: bool) -> None:
    channel.send(pp.ProcessMessage(ray_worker_lost=pp.RayWorkerLost(slot=slot.index, gone=gone, reason=_first_line(exc))))


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def main(args: argparse.Namespace) -> int:
    if not 1 <= args.workers <= MAX_WORKERS:
        channel.error(f"--workers must be in [1, {MAX_WORKERS}], got {args.workers}")
        return 2
    try:
        import ray  # noqa: PLC0415
    except ImportError:
        channel.error("this Python lacks Ray: run `npx afa worker setup --ray` (or pip install 'afa-worker[ray]' "
                      "into it; make setup does)")
        return 1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    watch_stdin(stop.set)
    try:
        problem = _connect(args)
    except Exception as exc:  # noqa: BLE001 - whatever Ray raised, said plainly
        problem = f"cannot connect to the Ray cluster at {args.address}: {_first_line(exc)}"
    if problem:
        channel.error(problem)
        return 1
    slots: list[_Slot] = []
    try:
        resources = ray.cluster_resources()
        gpus = args.gpus_per_worker if args.gpus_per_worker >= 0 else (1.0 if resources.get("GPU", 0) > 0 else 0.0)
        threads = args.threads or max(1, int(args.cpus_per_worker))
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
        channel.ready(ray_pool=pp.RayPoolReady(address=ray.get_runtime_context().gcs_address, nodes=nodes, gpus=gpus))
        remote = ray.remote(WorkerActor)
        for index in range(args.workers):
            actor = remote.options(num_cpus=args.cpus_per_worker, num_gpus=gpus, max_restarts=args.max_restarts,
                                   max_task_retries=0, scheduling_strategy="SPREAD").remote(threads)
            slots.append(_Slot(index, actor))
        prober = threading.Thread(target=_probe, args=(slots, stop), daemon=True, name="probe")
        prober.start()
        stop.wait()
        prober.join(timeout=5)
    finally:
        for slot in slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001, S110 - already gone
                pass
        ray.shutdown()
    return 0
