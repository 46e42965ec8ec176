#!/usr/bin/env bash
# The Ray suite (test/ray/), inside a private network namespace with nothing but lo.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/in-private-netns.sh node_modules/.bin/mocha --no-config -n import=tsx --require test/setup.ts --timeout 600000 --exit test/ray/ray.suite.ts
