#!/usr/bin/env bash
# Runs the Python and the TypeScript suites at once, and the Ray suite (scripts/run-ray-tests.sh,
# in a private network namespace) and the PostgreSQL test (scripts/test-postgres.sh: a real server,
# installed if missing, started on loopback, removed after) after the Python one. The TypeScript suite spends much of its
# time waiting on worker processes, npm, pip and Chromium, so the other two fill the idle core
# (about 15 min one after the other on 2 cores, about 12 at once). Their output is printed when
# all are done; the exit status fails if any does.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp "${TMPDIR:-/tmp}/afa-pytest.XXXXXX")
ray_log=$(mktemp "${TMPDIR:-/tmp}/afa-ray.XXXXXX")
trap 'rm -f "$log" "$ray_log"' EXIT
(cd python-worker && exec .venv/bin/python -m pytest -q) >"$log" 2>&1 &
python_suite=$!
(wait_for=$python_suite; while kill -0 "$wait_for" 2>/dev/null; do sleep 2; done
 scripts/run-ray-tests.sh; ray=$?; echo "--- PostgreSQL (scripts/test-postgres.sh) ---"; scripts/test-postgres.sh; pg=$?
 [ "$ray" -eq 0 ] && [ "$pg" -eq 0 ]) >"$ray_log" 2>&1 &
ray_suite=$!
node_modules/.bin/mocha
ts_status=$?
wait "$python_suite"
python_status=$?
wait "$ray_suite"
ray_status=$?
echo
echo "--- Python suite (pytest, ran alongside) ---"
cat "$log"
echo
echo "--- Ray suite and PostgreSQL test (after the Python suite) ---"
grep -v 'network_util.cc' "$ray_log"
echo "TypeScript suite: exit $ts_status; Python suite: exit $python_status; Ray suite and PostgreSQL test: exit $ray_status"
[ "$ts_status" -eq 0 ] && [ "$python_status" -eq 0 ] && [ "$ray_status" -eq 0 ]
