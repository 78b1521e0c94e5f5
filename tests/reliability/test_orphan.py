"""A Blender that dies mid-job: the real worker, started by a real parent through the add-on's
ProcessRunner, must notice within a second, stop, and leave no process and no job folder behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import DATA, REPO
from tests.helpers import quick_job
from tests.reliability.helpers import FAULTS

CAMEL = DATA / "rgba_frames/davis_camel"

PARENT = """
import json, sys, time
from pathlib import Path
from blender_stchain.bl.runner import ProcessRunner, cancel_path, new_job_dir, worker_args
from tests.helpers import quick_job
job_dir = new_job_dir(Path(sys.argv[1]))  # as Blender makes it: owner.pid names this process
job = quick_job(sys.argv[2], job_dir / "result.safetensors", sys.argv[3]).save(job_dir / "job.json")
runner = ProcessRunner(worker_args(job), cancel_file=cancel_path(job)).start()
print(json.dumps({"pid": runner.proc.pid, "job_dir": str(job_dir)}), flush=True)
while True:
    for event in runner.events():
        print(json.dumps(dict(event)), flush=True)
    if runner.final is not None:
        sys.exit(1)
    time.sleep(0.05)
"""


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody reaps yet (a container's pid 1 may not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_gone(pid: int, limit_s: float = 15.0) -> float:
    start = time.monotonic()
    while not gone(pid) and time.monotonic() - start < limit_s:
        time.sleep(0.02)
    return time.monotonic() - start


def until_stage(lines, stage: str) -> dict:
    event = None
    for line in lines:
        event = json.loads(line)
        if event.get("stage") == stage:
            return event
    raise AssertionError(f"the job ended before the {stage} stage: {event}")


def test_killed_parent_stops_the_worker_and_leaves_nothing(tiny_weights, tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(jobs), str(CAMEL), str(tiny_weights)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    started = json.loads(parent.stdout.readline())
    until_stage(parent.stdout, "anchor")  # mid-job: models loaded, the anchor shape running
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    took = wait_gone(started["pid"])
    print(f"worker exited {took:.2f} s after its parent was killed")
    FAULTS.append(("Blender killed mid-job", f"worker exited in {took:.2f} s", any(jobs.iterdir())))
    assert took < 2.0
    assert list(jobs.iterdir()) == []  # the job folder (frames, job.json, spool files) is gone


def test_closed_stdin_pipe_stops_the_worker(tiny_weights, tmp_path):
    """The sign Windows gives (its parent id does not change): the pipe the runner holds closes."""
    job_dir = tmp_path / "job-pipe"
    job_dir.mkdir()
    (job_dir / "owner.pid").write_text(str(os.getpid()))
    job = quick_job(CAMEL, job_dir / "result.safetensors", tiny_weights).save(job_dir / "job.json")
    proc = subprocess.Popen([sys.executable, "-m", "blender_stchain.engine.worker", str(job)], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "STCHAIN_WATCH_STDIN": "1"})
    until_stage(proc.stdout, "anchor")
    proc.stdin.close()
    start = time.monotonic()
    proc.wait(timeout=15)
    took = time.monotonic() - start
    print(f"worker exited {took:.2f} s after its stdin closed, code {proc.returncode}")
    assert proc.returncode == 2 and took < 2.0
    assert not job_dir.exists()
