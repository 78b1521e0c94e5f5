"""Verification of a runtime: ``probe.py`` in a fresh interpreter that sees that runtime alone.

Only a runtime that passed is ever made active; ``runtime check`` runs the same probe again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ..contracts.errors import Cancelled, StchainError

PROBE = Path(__file__).with_name("probe.py")


def clean_env(tmp: str | os.PathLike | None = None) -> dict:
    """The environment without what would change which packages load or how pip behaves: no
    ``PYTHON*`` (PYTHONPATH, PYTHONHOME), no ``PIP_*``; temporary files in ``tmp`` when given."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("PYTHON", "PIP_"))}
    if tmp is not None:
        env.update(TMPDIR=str(tmp), TEMP=str(tmp), TMP=str(tmp))
    return env


def wait(proc: subprocess.Popen, cancel, timeout_s: float, what: str) -> tuple[str, str]:
    """Wait for ``proc``; on cancel (Cancelled), timeout (StchainError) or Ctrl+C it is killed first."""
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                return proc.communicate(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
            if cancel is not None and cancel():
                raise Cancelled()
            if time.monotonic() > deadline:
                raise StchainError(f"{what} took over {timeout_s:.0f} s and was stopped")
    except BaseException:
        proc.kill()
        proc.communicate()
        raise


def verify(site: str | os.PathLike, device: str, python: str | None = None, cancel=None,
           timeout_s: float = 600.0) -> dict:
    """The probe's report (torch version, device name, dtype, errors) or StchainError with its line."""
    cmd = [python or sys.executable, "-I", str(PROBE), str(site), device, str(PROBE.parents[2])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env=clean_env())
    out, err = wait(proc, cancel, timeout_s, "the runtime check")
    try:
        report = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (err.strip().splitlines() or ["no output"])[-1]
        raise StchainError(f"the runtime check crashed (exit code {proc.returncode}): {tail}") from None
    if proc.returncode != 0 or not report.get("ok"):
        raise StchainError(f"the runtime failed its check: {report.get('error', 'no reason given')}")
    return report
