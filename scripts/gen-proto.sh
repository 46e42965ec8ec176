#!/usr/bin/env bash
# Generates the TypeScript (ts-proto, grpc-js services) and Python (grpcio-tools) stubs from proto/.
# Usage: scripts/gen-proto.sh [OUT_ROOT]   (default: the repository; a temp dir for the staleness check)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo}
python=${AFA_PYTHON:-$repo/python-worker/.venv/bin/python}
protos=(afa/v1/afa.proto afa/v1/process.proto grpc/health/v1/health.proto)
# The standard error model, for reading status details in TypeScript; Python imports the same
# messages from googleapis-common-protos (generating them twice would clash in its descriptor pool).
ts_only=(google/rpc/status.proto google/rpc/error_details.proto)

ts_out=$out/ts-sdk/src/gen
py_out=$out/python-worker/afa_worker/_gen
rm -rf "$ts_out" "$py_out"
mkdir -p "$ts_out" "$py_out"

cd "$repo"
node_modules/.bin/protoc \
  --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out="$ts_out" \
  --ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,importSuffix=.js,env=node,forceLong=number,oneof=unions-value,useOptionals=none,outputTypeRegistry=false \
  -I proto "${protos[@]}" "${ts_only[@]}"

# Mapping the include root onto the package path makes the generated imports package-relative
# (afa_worker._gen.afa.v1), so the stubs import without sys.path tricks.
"$python" -m grpc_tools.protoc -I "afa_worker/_gen=proto" \
  --python_out="$out/python-worker" --grpc_python_out="$out/python-worker" \
  $(printf 'proto/%s ' "${protos[@]}" | sed 's#proto/#afa_worker/_gen/#g') 2>&1 | grep -v '^$' || true
for d in "$py_out" "$py_out/afa" "$py_out/afa/v1" "$py_out/grpc" "$py_out/grpc/health" "$py_out/grpc/health/v1"; do
  [ -d "$d" ] && : > "$d/__init__.py"
done
