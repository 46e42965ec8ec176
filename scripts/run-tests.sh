#!/usr/bin/env bash
# Runs the Python and the TypeScript suites at once. The TypeScript suite spends much of its time
# waiting on worker processes, npm, pip and Chromium, so the Python suite fills the idle core
# (about 15 min one after the other on 2 cores, about 11 at once). The Python suite's output is
# printed when both are done; the exit status fails if either does.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp "${TMPDIR:-/tmp}/afa-pytest.XXXXXX")
trap 'rm -f "$log"' EXIT
(cd python-worker && exec .venv/bin/python -m pytest -q) >"$log" 2>&1 &
python_suite=$!
node_modules/.bin/mocha
ts_status=$?
wait "$python_suite"
python_status=$?
echo
echo "--- Python suite (pytest, ran alongside) ---"
cat "$log"
echo "TypeScript suite: exit $ts_status; Python suite: exit $python_status"
[ "$ts_status" -eq 0 ] && [ "$python_status" -eq 0 ]
