#!/usr/bin/env bash
# Runs the suites in two lanes at once, so that both cores work: the TypeScript suite in one; in
# the other the Python suite, then the Ray suite (scripts/run-ray-tests.sh, in a private network
# namespace), the PostgreSQL test (scripts/test-postgres.sh: a real server, installed if missing,
# started on loopback, removed after) and the consumer-package test (test/package.test.ts: npm
# pack, npm install, afa worker setup, mostly waiting on npm and pip). The TypeScript suite spends
# much of its time waiting on worker processes and Chromium, so the other lane fills the idle core
# (about 15 min one after the other on 2 cores). Their output is printed when all are done; the
# exit status fails if any does.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp "${TMPDIR:-/tmp}/afa-pytest.XXXXXX")
ray_log=$(mktemp "${TMPDIR:-/tmp}/afa-ray.XXXXXX")
trap 'rm -f "$log" "$ray_log"' EXIT
(cd python-worker && exec .venv/bin/python -m pytest -q) >"$log" 2>&1 &
python_suite=$!
(wait_for=$python_suite; while kill -0 "$wait_for" 2>/dev/null; do sleep 2; done
 scripts/run-ray-tests.sh; ray=$?; echo "--- PostgreSQL (scripts/test-postgres.sh) ---"; scripts/test-postgres.sh; pg=$?
 echo "--- the npm package in a consumer project (test/package.test.ts) ---"; node_modules/.bin/mocha --no-config -n import=tsx --require test/setup.ts --timeout 120000 --slow 5000 --exit test/package.test.ts; package=$?
 [ "$ray" -eq 0 ] && [ "$pg" -eq 0 ] && [ "$package" -eq 0 ]) >"$ray_log" 2>&1 &
ray_suite=$!
node_modules/.bin/mocha --ignore test/package.test.ts
ts_status=$?
wait "$python_suite"
python_status=$?
wait "$ray_suite"
ray_status=$?
echo
echo "--- Python suite (pytest, ran alongside) ---"
cat "$log"
echo
echo "--- Ray suite, PostgreSQL test and consumer-package test (after the Python suite) ---"
grep -v 'network_util.cc' "$ray_log"
echo "TypeScript suite: exit $ts_status; Python suite: exit $python_status; Ray suite, PostgreSQL and consumer-package tests: exit $ray_status"
[ "$ts_status" -eq 0 ] && [ "$python_status" -eq 0 ] && [ "$ray_status" -eq 0 ]
