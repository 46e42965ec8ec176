#!/usr/bin/env bash
# Fails when the committed generated code (ts-sdk/src/gen, python-worker/afa_worker/_gen) is not what
# proto/ generates now: run `make proto` and commit.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$repo/scripts/gen-proto.sh" "$tmp" >/dev/null
status=0
for dir in ts-sdk/src/gen python-worker/afa_worker/_gen; do
  if ! diff -r -q -x __pycache__ "$repo/$dir" "$tmp/$dir" >/dev/null; then
    diff -r -q -x __pycache__ "$repo/$dir" "$tmp/$dir" || true
    status=1
  fi
done
if [ $status -ne 0 ]; then
  echo "generated code is stale: proto/ changed without 'make proto' (regenerate and commit)" >&2
fi
exit $status
