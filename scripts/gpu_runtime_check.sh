#!/usr/bin/env bash
# Install the cu130 GPU runtime from a folder of real wheels (the ones vendor/runtime-lock-cu130.txt
# pins: on a machine without the network, fetch them beforehand with
#   pip download --no-deps --only-binary=:all: -d WHEELS -r <the lock's [linux-x64 cp311] lines>)
# then verify it on the GPU with `runtime check`. Usage: bash scripts/gpu_runtime_check.sh WHEELS [ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=$(realpath "$1")
ROOT=${2:-$(mktemp -d)/runtimes}
PY=${PYTHON:-.venv/bin/python}
TABLE=$(mktemp -d)/runtimes.json
"$PY" - "$WHEELS" "$TABLE" <<'PYEOF'
import json, sys
table = json.load(open("vendor/runtimes.json"))
for b in table["builds"]:
    b["index"] = {p: "find:" + sys.argv[1] for p in b["index"]}  # the same pinned hashes, a local folder
json.dump(table, open(sys.argv[2], "w"))
PYEOF
"$PY" -m blender_stchain runtime plan --table "$TABLE" --root "$ROOT"
"$PY" -m blender_stchain runtime install --build cu130 --table "$TABLE" --lock vendor/runtime-lock-cu130.txt --root "$ROOT"
"$PY" -m blender_stchain runtime check --json --root "$ROOT"
