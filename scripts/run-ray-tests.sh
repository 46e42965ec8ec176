#!/usr/bin/env bash
# The Ray suite (test/ray/), inside a private network namespace that has nothing but lo: Ray probes
# external addresses and binds wildcard by default, and no traffic may leave loopback. As root,
# `unshare -n`; otherwise a user namespace (`unshare -rn`) where the kernel allows one.
set -euo pipefail
cd "$(dirname "$0")/.."
inner='ip link set lo up && exec node_modules/.bin/mocha --no-config -n import=tsx --require test/setup.ts --timeout 600000 --exit test/ray/ray.suite.ts'
if [ "$(id -u)" -eq 0 ]; then
  exec unshare -n bash -c "$inner"
fi
if ! unshare -rn true 2>/dev/null; then
  echo "run-ray-tests: cannot make a private network namespace (needs root, or unprivileged user namespaces)" >&2
  exit 1
fi
exec unshare -rn bash -c "$inner"
