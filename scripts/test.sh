#!/usr/bin/env bash
# The test command. Runs the whole suite on .venv (Blender 5.0 / Python 3.11), then the Blender
# tests again on Blender 4.2 LTS (Python 3.11) and 5.2 LTS (Python 3.13) in their own venvs.
# The worker process always runs on .venv (it needs torch; Blender-side code never does).
# --quick: the inner loop, without the tests marked slow and without the Blender 4.2 / 5.2 matrices.
# --installed: only the installed tier (tests/installed, docs/extension.md): the built zip installed by Blender's
# own installer into a bpy-only Python (.venv-installed, made on first use), the real worker on the zip's wheels.
# The full run includes it (marked slow); its worker never uses STCHAIN_WORKER_PYTHON.
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
export STCHAIN_WORKER_PYTHON="$PWD/.venv/bin/python"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
args=()
for a in "$@"; do
  if [ "$a" = --quick ]; then
    args+=(-m "not slow"); STCHAIN_BLENDER_MATRIX=0
  elif [ "$a" = --installed ]; then
    args+=(-m installed); STCHAIN_BLENDER_MATRIX=0
  else
    args+=("$a")
  fi
done
blender_matrix() {  # name python bpy-version
  local venv=".venv-$1" py="$2" pins="vendor/dev-constraints-$1.txt"
  if ! "$py" --version >/dev/null 2>&1; then
    echo "FAILED: $py not found for the Blender $3 tests"; return 1
  fi
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -c "$pins" "bpy==$3" pytest safetensors Pillow
  "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "blender" tests/blender tests/build
}
matrix() {
  blender_matrix bpy42 python3.11 4.2.23
  # the installed tier again in Blender 4.2 LTS's Python (the same cp311 zip; docs/extension.md)
  STCHAIN_INSTALLED_BPY=4.2.23 .venv/bin/python -m pytest -q -p no:cacheprovider -m installed tests/installed
  PY313=python3.13
  python3.13 --version >/dev/null 2>&1 || PY313=$(ls -d /root/.pyenv/versions/3.13*/bin/python3 2>/dev/null | tail -1)
  blender_matrix bpy52 "$PY313" 5.2.3
}

# The matrices run beside the main suite (their own venvs, HOMEs and temp folders; builds stage in folders of
# their own): mostly single-threaded Blender work, it keeps CI well under its time limit on two cores.
mlog=""
if [ "${STCHAIN_BLENDER_MATRIX:-1}" = 1 ]; then
  mlog=$(mktemp)
  ( set -e; matrix ) >"$mlog" 2>&1 &
  mpid=$!
  # a background job ignores Ctrl-C in a script: stop the matrices (and their pytest) with the main suite
  trap 'pkill -TERM -P "$mpid" 2>/dev/null; kill "$mpid" 2>/dev/null; rm -f "$mlog"; exit 130' INT TERM
fi
rc=0
.venv/bin/python -m pytest -q -p no:cacheprovider ${args[@]+"${args[@]}"} tests || rc=$?
if [ -n "$mlog" ]; then
  mrc=0
  wait "$mpid" || mrc=$?
  echo "== Blender 4.2 / 4.2 installed / 5.2 matrices (exit $mrc)"
  cat "$mlog"
  rm -f "$mlog"
  [ "$mrc" = 0 ] || { echo "FAILED: Blender matrices"; [ "$rc" != 0 ] || rc=$mrc; }
fi
exit "$rc"
