"""Controller and runners without a window: real threads, real worker processes."""

import time

import pytest

from blender_stchain.bl.controller import Controller, State, format_eta
from blender_stchain.bl.runner import (
    ProcessRunner,
    ThreadRunner,
    cancel_path,
    worker_args,
)
from blender_stchain.contracts.result import load_result
from tests.blender.workers import stub_env, write_job


def drive(ctl, timeout=60.0):
    """What the modal timer does: poll until finished; returns every status line seen."""
    lines, end = [], time.monotonic() + timeout
    while not ctl.finished:
        assert time.monotonic() < end, "job did not finish"
        ctl.poll()
        lines.append(ctl.status_line())
        time.sleep(0.01)
    return lines


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_eta_and_result(tmp_path):
    clock = FakeClock()
    gate = []

    def job(path, emit, cancelled):
        emit({"event": "progress", "stage": "anchor", "fraction": 0.25, "message": "stage 0", "eta_s": None})
        emit({"event": "warning", "message": "small mask"})
        while not gate:
            time.sleep(0.005)
        return tmp_path / "r.safetensors"

    ctl = Controller(clock=clock)
    ctl.start(ThreadRunner(tmp_path / "job.json", job))
    while ctl.progress.stage != "anchor":
        ctl.poll()
    clock.t += 30.0  # 30 s for a quarter: 90 s left
    line = ctl.status_line()
    print("status:", line)
    assert ctl.state == State.RUNNING and ctl.eta_s() == pytest.approx(90.0)
    assert line == "anchor 25% - stage 0 (1 min 30 s left)"
    assert ctl.warnings == ["small mask"]
    gate.append(1)
    drive(ctl)
    assert ctl.state == State.DONE and ctl.result_path == str(tmp_path / "r.safetensors")


def test_worker_eta_wins_and_format():
    ctl = Controller()
    ctl.handle({"event": "progress", "stage": "chain", "fraction": 0.5, "message": "", "eta_s": 7.4})
    assert ctl.eta_s() == 7.4 and format_eta(7.4) == "7 s" and format_eta(125) == "2 min 05 s"


def test_cancel_thread(tmp_path):
    def job(path, emit, cancelled):
        while not cancelled():
            emit({"event": "progress", "stage": "chain", "fraction": 0.1, "message": "", "eta_s": None})
            time.sleep(0.01)
        raise RuntimeError("stopped")

    ctl = Controller()
    ctl.start(ThreadRunner(tmp_path / "job.json", job))
    ctl.poll()
    ctl.cancel()
    assert ctl.state == State.CANCELLING and ctl.status_line().startswith("Cancelling: ")
    drive(ctl)
    assert ctl.state == State.CANCELLED and ctl.result_path is None


def test_error_thread(tmp_path):
    def job(path, emit, cancelled):
        raise ValueError("frame range 90:95 is outside the clip (1-82)")

    ctl = Controller()
    ctl.start(ThreadRunner(tmp_path / "job.json", job))
    drive(ctl)
    assert ctl.state == State.FAILED and ctl.message == "frame range 90:95 is outside the clip (1-82)"


def run_stub(tmp_path, mode, cancel_after=None, weights=None):
    job = write_job(tmp_path, weights=weights)
    runner = ProcessRunner(worker_args(job, "stub_worker"), cancel_file=cancel_path(job), env=stub_env(mode), grace_s=1.0)
    ctl = Controller()
    t0 = time.monotonic()
    ctl.start(runner)
    if cancel_after is not None:
        while ctl.progress.fraction == 0.0 and ctl.progress.stage == "":
            ctl.poll()
            time.sleep(0.01)
        time.sleep(cancel_after)
        ctl.cancel()
    drive(ctl)
    runner.proc.wait(timeout=10)
    print(f"{mode}: {ctl.state.value} '{ctl.message}' in {time.monotonic() - t0:.2f} s, exit {runner.proc.returncode}")
    return ctl, runner


def test_process_ok(tmp_path):
    ctl, runner = run_stub(tmp_path, "ok")
    assert ctl.state == State.DONE and runner.proc.returncode == 0
    assert ctl.warnings == ["stand-in worker: synthetic result"]
    assert load_result(ctl.result_path).num_frames == 6


def test_process_killed(tmp_path):
    ctl, runner = run_stub(tmp_path, "crash")
    assert ctl.state == State.FAILED and runner.proc.returncode == -9
    assert ctl.message == "the worker was killed (out of memory?); nothing was written"
    assert not (tmp_path / "result.safetensors").exists()


def test_process_raises(tmp_path):
    ctl, _ = run_stub(tmp_path, "raise")
    assert ctl.state == State.FAILED and ctl.message == "CUDA out of memory (stand-in)"


def test_process_cancel(tmp_path):
    ctl, runner = run_stub(tmp_path, "hang", cancel_after=0.2)
    assert ctl.state == State.CANCELLED and runner.proc.returncode == 3  # left through the cancel file
    assert not (tmp_path / "result.safetensors").exists()


def test_process_cancel_escalates_to_sigterm(tmp_path):
    ctl, runner = run_stub(tmp_path, "deaf", cancel_after=0.2)  # grace 1 s, then SIGTERM
    assert ctl.state == State.CANCELLED and runner.proc.returncode == -15
    assert not (tmp_path / "result.safetensors").exists()


def test_process_missing_weights(tmp_path):
    ctl, _ = run_stub(tmp_path, "ok", weights=str(tmp_path / "nope"))
    assert ctl.state == State.FAILED and "weights folder" in ctl.message and "missing" in ctl.message
