"""Faults injected into real runs (real files, real processes): each gives one clear message and
leaves no result, no spool and no temporary file behind."""

import json
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from blender_stchain.contracts.errors import NumericalError
from blender_stchain.contracts.result import ResultWriter, load_result
from blender_stchain.engine.pipeline import run
from tests.conftest import REPO
from tests.helpers import quick_job
from tests.reliability.helpers import CAMEL, FAULTS, leftovers, start_worker


def poison(weights, tmp_path, rel, key):
    """A copy of the weights whose tensor ``key`` in ``rel`` is NaN (metadata kept)."""
    root = tmp_path / "poisoned"
    shutil.copytree(weights, root)
    from safetensors import safe_open

    path = root / rel
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, str(path), metadata=meta)
    return root


@pytest.mark.parametrize("rel, key, stage", [
    ("TripoSG/transformer/diffusion_pytorch_model.safetensors", "proj_out.bias", "anchor"),
    ("ActionMesh/denoiser/model.safetensors", "proj_out.bias", "window 1"),
])
def test_nan_in_a_model_output_names_the_stage(rel, key, stage, tiny_weights, tmp_path):
    out = tmp_path / "out"
    job = quick_job(CAMEL, out / "r.safetensors", poison(tiny_weights, tmp_path, rel, key))
    with pytest.raises(NumericalError, match=stage) as e:
        run(job)
    FAULTS.append((f"NaN in {key} of {rel}", str(e.value), bool(leftovers(out))))
    print(e.value)
    assert leftovers(out) == []


@pytest.mark.slow
def test_disk_full_while_writing_leaves_no_partial_result(tiny_weights, tmp_path):
    def small_disk():  # a real write limit: writes past 150 kB fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))

    out = tmp_path / "out"
    proc = start_worker(quick_job(CAMEL, out / "r.safetensors", tiny_weights), tmp_path, small_disk)
    stdout, _ = proc.communicate(timeout=600)
    last = json.loads(stdout.splitlines()[-1])
    FAULTS.append(("disk full while writing", last["message"], bool(leftovers(out))))
    print(last["message"])
    assert proc.returncode == 1 and last["event"] == "error" and "disk full" in last["message"]
    assert leftovers(out) == []


def test_killed_worker_leaves_nothing_after_the_next_run(tiny_weights, tmp_path):
    out = tmp_path / "out"
    proc = start_worker(quick_job(CAMEL, out / "r.safetensors", tiny_weights), tmp_path)
    for line in proc.stdout:  # kill it in the middle of the windows
        if json.loads(line).get("stage") == "windows":
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    stale = leftovers(out)
    assert not (out / "r.safetensors").exists() and any(n.startswith(".stchain-spool-") for n in stale)
    ResultWriter(out / "other.safetensors").abort()  # the next writer in that folder cleans up after the dead one
    FAULTS.append(("worker killed mid-run", f"exit {proc.returncode}", bool(leftovers(out))))
    assert leftovers(out) == []


# When the cancel is asked: 0.5 s after the start (the worker is still importing), or right after the
# worker's first event whose (stage, message) starts with these; every one is before the run can end.
CANCEL_POINTS = [pytest.param(None, id="start"), pytest.param(("load", "reading footage"), id="load"),
                 pytest.param(("anchor", "anchor shape, step 1/"), id="anchor", marks=pytest.mark.slow),
                 pytest.param(("windows", "window 1/"), id="windows", marks=pytest.mark.slow)]


def _cancel_at(point, proc) -> str:
    if point is None:
        time.sleep(0.5)
        return "0.5 s after the start"
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("stage") == point[0] and event.get("message", "").startswith(point[1]):
            return f"after '{event['message']}'"
    raise AssertionError(f"the run ended before the {point} event")


@pytest.mark.parametrize("point", CANCEL_POINTS)
def test_cancel_takes_effect_promptly_at_any_point(point, tiny_weights, tmp_path):
    """The cancel must stop the run (exit 2, a cancelled event, no result) within 2 s and leave nothing."""
    out = tmp_path / "out"
    proc = start_worker(quick_job(CAMEL, out / "r.safetensors", tiny_weights), tmp_path)
    when = _cancel_at(point, proc)
    asked = time.monotonic()
    (tmp_path / "job.json.cancel").touch()
    rest, _ = proc.communicate(timeout=60)
    took = time.monotonic() - asked
    last = json.loads(rest.splitlines()[-1])
    FAULTS.append((f"cancel {when}", f"exit {proc.returncode} in {took:.2f} s", bool(leftovers(out))))
    print(f"cancel {when}: exit {proc.returncode} in {took:.2f} s, last event {last}")
    assert proc.returncode == 2 and last.get("cancelled") and took < 2.0
    assert leftovers(out) == []


def test_real_allocation_failures_count_as_out_of_memory():
    from blender_stchain.contracts.errors import out_of_memory

    caught = []
    for allocate in (lambda: torch.empty(1 << 50, dtype=torch.uint8), lambda: np.empty(1 << 50, np.uint8)):
        try:
            allocate()
        except Exception as e:  # the CPU allocator's RuntimeError, numpy's MemoryError
            caught.append(e)
    assert len(caught) == 2 and all(out_of_memory(e) for e in caught)
    assert not out_of_memory(RuntimeError("shapes cannot be multiplied")) and not out_of_memory(ValueError("x"))
    assert out_of_memory(RuntimeError("could not create a primitive"))  # oneDNN, seen in the capped run below
    assert not out_of_memory(RuntimeError("could not create a primitive descriptor for a matmul primitive"))


def test_only_a_onednn_failure_turns_onednn_off_for_the_retry():
    """The retry runs without oneDNN only when oneDNN itself failed (it stays broken in the process); a
    plain allocation failure (a real numpy MemoryError) retries with oneDNN on and says nothing of it."""
    from types import SimpleNamespace

    from blender_stchain.contracts.progress import Reporter
    from blender_stchain.contracts.settings import Settings
    from blender_stchain.engine.pipeline import _retry_smaller

    def once(error):
        calls, warnings = [], []
        r = SimpleNamespace(backbone=SimpleNamespace(device=torch.device("cpu")), settings=Settings(),
                            rep=Reporter(lambda e: warnings.append(e.message), None, {"windows": 1.0}))

        def work(r, settings):
            calls.append((settings.decode_chunk, torch.backends.mkldnn.enabled))
            if len(calls) == 1:
                error()
            return "done"

        before = torch.backends.mkldnn.enabled
        try:
            assert _retry_smaller(r, lambda settings: work(r, settings)) == "done"
        finally:
            torch.backends.mkldnn.enabled = before  # ``run`` restores it; this test calls the retry alone
        return calls, warnings

    calls, warnings = once(lambda: np.empty(1 << 50, np.uint8))
    assert [on for _, on in calls] == [True, True] and calls[1][0] < calls[0][0]
    assert len(warnings) == 1 and "oneDNN" not in warnings[0]

    def onednn():  # oneDNN cannot be made to fail here on demand: its message, as seen in the capped run below
        raise RuntimeError("could not create a primitive")

    calls, warnings = once(onednn)
    assert [on for _, on in calls] == [True, False] and "and without oneDNN kernels, kept for the rest of the run" in warnings[0]


# Runs the pipeline in a fresh process whose address space is capped at its current size as soon as
# the first window starts: every new block fails inside the window, as on a full GPU. With "lift",
# the cap goes when the pipeline announces its retry, so the retry must complete the run; without, the
# room the failed attempt freed is taken as well (as another program would), else the retry's smaller
# chunks can fit in it (a window's candidate surfaces are decoded in small calls on a CPU).
OOM_RUN = """
import json, resource, sys
sys.path.insert(0, {repo!r})
from blender_stchain.contracts.errors import StchainError
from blender_stchain.contracts.job import JobSpec
from blender_stchain.engine.pipeline import run
lift, capped, warnings, hoard = sys.argv[1] == "lift", [], [], []

def vm_size():
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))

def on_event(e):
    if e["event"] == "progress" and e["stage"] == "windows" and not capped:
        capped.append(vm_size())
        resource.setrlimit(resource.RLIMIT_AS, (capped[0], resource.RLIM_INFINITY))
    if e["event"] == "warning":
        warnings.append(e["message"])
        if "out of memory" in e["message"] and lift:
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        elif "out of memory" in e["message"]:  # keep: the room the failed attempt freed is taken too
            resource.setrlimit(resource.RLIMIT_AS, (vm_size(), resource.RLIM_INFINITY))
            try:
                while True:
                    hoard.append(bytearray(1 << 20))
            except MemoryError:
                del hoard[-8:]  # a little room for the error path

try:
    outcome = {{"result": str(run(JobSpec.load({job!r}), on_event))}}
except StchainError as e:
    outcome = {{"error": str(e)}}
print(json.dumps({{**outcome, "warnings": warnings}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["lift", "keep"])
def test_out_of_memory_in_a_window_retries_once_then_says_what_to_lower(mode, tiny_weights, tmp_path):
    out = tmp_path / "out"
    job = quick_job(CAMEL, out / "r.safetensors", tiny_weights).save(tmp_path / "job.json")
    proc = subprocess.run([sys.executable, "-c", OOM_RUN.format(repo=str(REPO), job=str(job)), mode],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    retries = [w for w in report["warnings"] if "out of memory" in w]
    print(mode, report.get("error") or report["result"], retries)
    assert len(retries) == 1 and "decode_chunk 65536, attention_chunk 2048, vertex_chunk 1024" in retries[0]
    if mode == "lift":
        assert leftovers(out) == ["r.safetensors"] and load_result(out / "r.safetensors").num_frames == 16
        FAULTS.append(("out of memory in window 1, then room again", retries[0], False))
    else:
        assert report["error"].startswith("out of memory on cpu even with smaller chunks: lower")
        FAULTS.append(("out of memory in window 1, twice", report["error"], bool(leftovers(out))))
        assert leftovers(out) == []
