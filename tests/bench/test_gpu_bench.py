"""The benches ``bench/gpu.sh`` runs on a device machine, run here on the CPU at tiny size, the way the
device runs them: random weights made in memory (no weights root on disk) and no PyAV (the device image
has none), so a first device call is not spent finding a broken bench."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture()
def device_like_env(tmp_path):
    """PYTHONPATH with an ``av`` that cannot be imported, as on the device machine."""
    (tmp_path / "stub" / "av").mkdir(parents=True)
    (tmp_path / "stub" / "av" / "__init__.py").write_text("raise ImportError('no PyAV on the device machine')\n")
    return {**os.environ, "PYTHONPATH": f"{tmp_path / 'stub'}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}


def bench(env, *args, timeout=600):
    out = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_pipeline_bench_runs_both_methods_on_in_memory_weights(device_like_env, tmp_path):
    footage = tmp_path / "footage"
    bench(device_like_env, "bench/synthetic_footage.py", str(footage), "--frames", "6")
    missing_root = tmp_path / "no-weights-here"
    report = json.loads(bench(device_like_env, "bench/pipeline.py", "--size", "tiny", "--in-memory", "--device", "cpu",
                              "--no-warmup", "--frames", "6", "--footage", str(footage),
                              "--weights", str(missing_root)))
    for method in ("chain", "actionmesh"):
        r = report[method]
        assert "error" not in r, r.get("error")
        assert r["compute_s"] > 0 and r["vertices"] > 100 and r["device"] == "cpu"
        stages = r["stages"]
        assert {"anchor", "windows", "camera"} <= set(stages)
        assert all(s["model_s"] is not None and s["host_s"] is not None for k, s in stages.items() if k != "load")
    assert report["ratio_baseline_over_chain"] == pytest.approx(
        report["actionmesh"]["compute_s"] / report["chain"]["compute_s"], abs=0.01)
    assert not missing_root.exists()  # nothing was written or loaded from disk


def test_gpu_script_ends_within_its_budget_whatever_a_step_does(tmp_path):
    """A step that hangs is cut at what is left of BUDGET, and the steps after it are skipped, so the
    script ends (with what finished) inside one device call."""
    import time

    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\n[ "$1" = - ] && exit 0\nexec sleep 1000\n')  # the CUDA check passes, steps hang
    fake.chmod(0o755)
    env = {**os.environ, "PY": str(fake), "BUDGET": "12", "OUT": str(tmp_path / "out")}
    t = time.monotonic()
    out = subprocess.run(["bash", "bench/gpu.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t
    lines = [line for line in out.stdout.splitlines() if line.startswith("== ")]
    assert lines[0].startswith("== flops: exit 124 in 1")  # killed at the 12 s left, not at its own 120 s
    assert len(lines) == 8 and all(line.endswith("skipped, budget spent") for line in lines[1:])
    assert took < 30 and int(open(REPO / "bench/gpu.sh").read().split("BUDGET=${BUDGET:-")[1].split("}")[0]) < 600
