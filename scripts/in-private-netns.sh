#!/usr/bin/env bash
# Runs a command inside a private network namespace that has nothing but lo: Ray probes external
# addresses and binds wildcard by default, and no traffic may leave loopback. As root `unshare -n`;
# otherwise a user namespace (`unshare -rn`) where the kernel allows one.
# Usage: scripts/in-private-netns.sh COMMAND [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
flags=-n
if [ "$(id -u)" -ne 0 ]; then
  if ! unshare -rn true 2>/dev/null; then
    echo "in-private-netns: cannot make a private network namespace (needs root, or unprivileged user namespaces)" >&2
    exit 1
  fi
  flags=-rn
fi
exec unshare "$flags" bash -c 'ip link set lo up && exec "$@"' bash "$@"
