"""Batches on a local Ray instance (2 CPU actors, one thread each, tiny random weights, 6-16 frame clips).

"Identical to `run`" is defined in compare.py: bit-identical tensors, metadata equal except the measured
``seconds``.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blender_stchain.contracts.result import load_result

from ..conftest import REPO
from .compare import CAMEL, HORSE, QUICK, assert_same_result
from .test_worker import blend_contents

pytestmark = pytest.mark.slow
LONG = {**CAMEL, "frames": [1, 16], "name": "long"}


def jobs_file(path: Path, *jobs) -> Path:
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    return path


def start_batch(jobs: Path, out: Path, weights, *extra) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "blender_stchain", "batch", str(jobs), "--out", str(out), "--workers", "2",
           "--cpus-per-job", "1", "--object-store-mb", "100", "--weights", str(weights), "--allow-random-weights",
           "--preset", "fast", *extra]
    for s in QUICK:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as in a terminal


def finish(proc: subprocess.Popen, timeout=300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def events(out: Path) -> list[dict]:
    path = out / "events.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def wait_for_event(out: Path, proc, match, timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for e in events(out):
            if match(e):
                return e
        time.sleep(0.05)
    raise AssertionError(f"no such event before the batch ended: {events(out)[-3:]}")


def summary(out: Path) -> dict:
    s = json.loads((out / "summary.json").read_text())
    s["by_name"] = {c["name"]: c for c in s["clips"]}
    return s


def bad_clip(tmp_path: Path) -> dict:
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(6):
        data = (Path(CAMEL["footage"]) / f"{i:02d}.png").read_bytes()
        (bad / f"{i:02d}.png").write_bytes(data[:300] if i == 2 else data)  # frame 3 truncated
    return {"footage": str(bad), "name": "bad"}


def only_finished_files(out: Path, s: dict, kinds=(".safetensors", ".job.json")) -> None:
    """The batch folder holds the log, the summary and, for each clip done, its result and job file."""
    done = [n for n, c in s["by_name"].items() if c["status"] == "done"]
    expect = {"events.jsonl", "summary.json"} | {n + k for n in done for k in kinds}
    assert {str(p.relative_to(out)) for p in out.rglob("*")} == expect


def test_three_clips_one_bad_give_two_results_like_run_and_one_error_then_resume_runs_nothing(
        tiny_weights, run_results, tmp_path):
    out = tmp_path / "out"
    jobs = jobs_file(tmp_path / "jobs.jsonl", CAMEL, bad_clip(tmp_path), HORSE)
    code, err = finish(start_batch(jobs, out, tiny_weights))
    s = summary(out)
    assert code == 1 and "batch: 2 done, 0 skipped, 1 failed, 0 cancelled" in err, err
    assert s["counts"] == {"done": 2, "skipped": 0, "failed": 1, "cancelled": 0} and s["workers"] == 2
    bad = s["by_name"]["bad"]
    assert bad["status"] == "failed" and bad["message"].startswith("cannot read frame 3") and bad["result"] == ""
    for name in ("camel", "horse"):
        assert_same_result(out / f"{name}.safetensors", run_results[name])
    only_finished_files(out, s)
    log = events(out)
    assert {e["clip"] for e in log if e["event"] == "start"} == {"camel", "bad", "horse"}
    assert any(e["clip"] == "horse" and e["event"] == "progress" and e["stage"] == "windows" for e in log)
    ends = [(e["clip"], e["event"]) for e in log if e["event"] in ("done", "failed")]
    assert sorted(ends) == [("bad", "failed"), ("camel", "done"), ("horse", "done")]  # one outcome line per clip
    for name in ("camel", "horse"):  # after every event of its clip (the write stage's 100% included)
        mine = [e for e in log if e["clip"] == name]
        assert mine[-1]["event"] == "done" and mine[-2]["fraction"] == 1.0
    print(f"3 clips on 2 workers: {s['seconds']} s ({s['clips_per_hour']} clips/h)")

    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.safetensors")}
    again = jobs_file(tmp_path / "good.jsonl", CAMEL, HORSE)
    code, err = finish(start_batch(again, out, tiny_weights, "--resume"))
    s = summary(out)
    assert code == 0 and s["counts"] == {"done": 0, "skipped": 2, "failed": 0, "cancelled": 0}, err
    assert s["workers"] == 0 and "Ray" not in err  # nothing to run: Ray is not even started
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.safetensors")} == before
    assert len(events(out)) == len(log) + 2  # two "skipped" lines, no start


def test_a_worker_killed_mid_clip_has_its_clip_retried_and_every_clip_done(tiny_weights, run_results, tmp_path):
    out = tmp_path / "out"
    proc = start_batch(jobs_file(tmp_path / "jobs.jsonl", LONG, CAMEL, HORSE), out, tiny_weights, "--via-object-store",
                       "--blend", "--export", "abc")
    wait_for_event(out, proc, lambda e: e["clip"] == "long" and e.get("stage") in ("anchor", "windows"))
    victim = next(e["pid"] for e in events(out) if e["clip"] == "long" and e["event"] == "start")
    os.kill(victim, signal.SIGKILL)
    code, err = finish(proc)
    s = summary(out)
    assert code == 0 and s["counts"]["done"] == 3, err
    long = s["by_name"]["long"]
    assert long["attempts"] == 2 and long["worker"] != f"{long['worker'].split(':')[0]}:{victim}"
    assert any(e["clip"] == "long" and e["event"] == "retry" and "died" in e["message"] for e in events(out))
    assert list(load_result(out / "long.safetensors").frame_numbers) == list(range(1, 17))
    for name in ("camel", "horse"):
        assert_same_result(out / f"{name}.safetensors", run_results[name])
    only_finished_files(out, s, kinds=(".safetensors", ".job.json", ".blend", ".abc"))  # exports: the driver's too
    assert {e["shared"] for e in events(out) if e["event"] == "start"} == {False}  # written by the driver
    assert blend_contents(out / "long.blend") == [[17, str(out / "long.safetensors")]]


def test_gpus_asked_of_a_machine_without_any_is_one_clear_error(tiny_weights, tmp_path):
    out = tmp_path / "out"
    jobs = jobs_file(tmp_path / "jobs.jsonl", CAMEL)
    code, err = finish(start_batch(jobs, out, tiny_weights, "--gpus-per-job", "64"))
    assert code == 1 and re.fullmatch(r"error: the Ray cluster has no room for one worker \(2 CPUs, \d+ GPUs; a worker "
                                      r"needs 1 CPUs and 64 GPUs\): lower --cpus-per-job / --gpus-per-job or add nodes",
                                      err.splitlines()[-1]), err
    s = summary(out)
    assert s["by_name"]["camel"]["status"] == "failed" and s["by_name"]["camel"]["message"].startswith("not run: ")
    assert sorted(p.name for p in out.iterdir()) == ["events.jsonl", "summary.json"]


def test_ctrl_c_cancels_cleanly_and_leaves_no_partial_file(tiny_weights, tmp_path):
    out = tmp_path / "out"
    proc = start_batch(jobs_file(tmp_path / "jobs.jsonl", LONG, CAMEL, HORSE), out, tiny_weights)
    wait_for_event(out, proc, lambda e: e["clip"] == "long" and e.get("stage") == "windows")
    pids = [e["pid"] for e in events(out) if e["event"] == "start"]
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group gets it
    code, err = finish(proc, timeout=120)
    s = summary(out)
    assert code == 2 and s["by_name"]["long"]["status"] == "cancelled", err
    assert s["counts"]["cancelled"] >= 1 and s["counts"]["failed"] == 0
    only_finished_files(out, s)
    for name, c in s["by_name"].items():
        if c["status"] == "done":
            assert len(load_result(out / f"{name}.safetensors").frame_numbers) == 6
    time.sleep(2)
    for pid in pids:  # the workers are gone with the local Ray instance
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
