#!/usr/bin/env bash
# Creates .venv (Python 3.11) with the runtime (torch CPU, numpy, safetensors), the test extras and
# the PyPI bpy module. Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${STCHAIN_PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -c vendor/dev-constraints.txt -e ".[test]" -r vendor/dev-requirements.txt
.venv/bin/python -c "import torch, bpy, safetensors; print('setup ok: torch', torch.__version__, '| bpy', bpy.app.version_string)"
