"""A two-node Ray cluster on this machine for the Ray tests, started the way Ray's own tests do
(ray.cluster_utils.Cluster): a head and a second node, each with its own AFA_CACHE (so each node
has its own weight store), a small object store, no dashboard, node deaths noticed within seconds.
Prints one JSON line with the address and the nodes, then answers commands on stdin:
``actors`` prints ``ACTORS <json>``: the afa worker actors that are not dead; EOF shuts the cluster down.
Run it only inside a private network namespace (scripts/run-ray-tests.sh)."""

from __future__ import annotations

import json
import os
import sys
import tempfile

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import ray  # noqa: E402
from ray._private import state  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

STORE = 80 * 1024 * 1024


def _node(node, role: str, cache: str) -> dict:
    return {"role": role, "node_id": node.node_id, "raylet_pid": node.all_processes["raylet"][0].process.pid, "cache": cache}


def main() -> int:
    head_cache, node2_cache = sys.argv[1], sys.argv[2]
    temp = tempfile.mkdtemp(prefix="afa-ray-")
    # Ray writes its address file under $RAY_TMPDIR/ray (default /tmp/ray) whatever temp_dir says
    # (ray.cluster_utils.Cluster calls write_ray_address without it), and on a machine that never
    # ran Ray that folder does not exist. A private one: nothing in the shared /tmp/ray, either.
    os.environ["RAY_TMPDIR"] = temp
    os.makedirs(os.path.join(temp, "ray"), exist_ok=True)
    os.environ["AFA_CACHE"] = head_cache
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "object_store_memory": STORE, "include_dashboard": False, "temp_dir": temp,
        "_system_config": {"health_check_period_ms": 500, "health_check_timeout_ms": 1000,
                           "health_check_failure_threshold": 3}})
    os.environ["AFA_CACHE"] = node2_cache  # the second node's raylet, and so its workers, see this one
    node2 = cluster.add_node(num_cpus=2, object_store_memory=STORE)
    os.environ["AFA_CACHE"] = head_cache
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    print(json.dumps({"address": cluster.address, "nodes": [_node(cluster.head_node, "head", head_cache),
                                                             _node(node2, "node2", node2_cache)]}), flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "actors":
                actors = [{"state": a["State"], "class": a.get("ActorClassName", ""), "pid": a.get("Pid")}
                          for a in state.actors().values() if "WorkerActor" in a.get("ActorClassName", "")]
                print("ACTORS " + json.dumps([a for a in actors if a["state"] != "DEAD"]), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
