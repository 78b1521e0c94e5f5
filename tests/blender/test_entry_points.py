"""One command line everywhere: the same bad inputs through every entry point give the same one-line
message and exit code; runs leave no file in the temp folder on success, failure or cancel; a headless
run from a fresh (factory) session saves a .blend that holds only our objects."""

import json
import subprocess
import sys
import tempfile
import threading
import time

import pytest

bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
pytestmark = pytest.mark.blender

from blender_stchain import cli  # noqa: E402
from blender_stchain.bl import headless, ops  # noqa: E402
from blender_stchain.engine import worker  # noqa: E402
from tests.blender.workers import stub_env  # noqa: E402
from tests.conftest import DATA, REPO  # noqa: E402

CAMEL = str(DATA / "rgba_frames" / "davis_camel")
BAD = [  # (extra options, the one line every entry point prints, exit code)
    (["--set", "top_k=abc"], "error: --set top_k=abc: setting top_k must be a whole number, got 'abc'", 1),
    (["--set", "tau=-1"], "error: --set tau=-1: setting tau must be at least 1e-06, got -1", 1),
    (["--set", "no_such=1"], "error: --set no_such: unknown setting; see blender_stchain/contracts/settings.py", 1),
    (["--frames", "7:2"], "error: --frames 7:2: frames are 1-based and A <= B, e.g. 1:16", 1),
    (["--preset", "turbo"], "error: argument --preset: invalid choice: 'turbo' (choose from ", 1),  # argparse's words
    (["--device", "gpu"], "error: --device 'gpu' is not one of auto, cpu, cuda, cuda:N, mps", 1),
    (["--footage", "/no/such/clip.mp4"], "error: footage not found: /no/such/clip.mp4", 1),  # before the weights
]


def _last_err(capfd) -> list[str]:
    return [line for line in capfd.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize("extra,line,code", BAD, ids=[b[0][-1] for b in BAD])
def test_same_bad_input_same_line_everywhere(registered, tmp_path, capfd, extra, line, code):
    """`run`, the bpy module path, the `blender -c stchain` handler and `-P scripts/stchain_run.py`'s
    entry (bl.entry.main) print exactly the same single line and exit code, before reading a frame."""
    from blender_stchain.bl import entry

    base = ["--footage", CAMEL, "--weights", str(tmp_path / "nothing")]
    seen = {
        "run": cli.main(["run", *base, "--out", str(tmp_path / "r.safetensors"), *extra]),
        "bpy module": cli.main([*base, "--out", str(tmp_path / "b.blend"), *extra]),
        "blender -c": headless.cli_command([*base, "--out", str(tmp_path / "c.blend"), *extra]),
        "blender -P": entry.main([*base, "--out", str(tmp_path / "p.blend"), *extra]),
    }
    lines = _last_err(capfd)  # the stderr of all four calls: four identical lines, nothing else
    print(seen, lines)
    assert len(lines) == 4 and len(set(lines)) == 1 and lines[0].startswith(line) and set(seen.values()) == {code}
    assert not list(tmp_path.iterdir())  # nothing written


def test_missing_weights_same_line_in_run_and_blender(registered, tmp_path, capfd, monkeypatch):
    """Missing weights are reported before any frame is decoded, with both next steps, by `run` and by
    the Blender path (through the worker's --check), as the same line."""
    monkeypatch.delenv("STCHAIN_WORKER_MODULE", raising=False)
    weights = tmp_path / "empty"
    base = ["--footage", CAMEL, "--weights", str(weights)]
    rc_run = cli.main(["run", *base, "--out", str(tmp_path / "r.safetensors")])
    rc_bl = cli.main([*base, "--out", str(tmp_path / "b.blend")])
    lines = [x for x in _last_err(capfd) if x.startswith("error:")]
    print(lines)
    assert rc_run == rc_bl == 1 and len(lines) == 2 and lines[0] == lines[1]
    assert lines[0].startswith(f"error: weights missing at {weights} (") and "weights download" in lines[0]
    assert "--allow-random-weights" in lines[0]


def test_worker_reports_the_same_setting_error(tmp_path, capsys):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"footage": CAMEL, "out": str(tmp_path / "r.safetensors"), "settings": {"top_k": "abc"}}))
    assert worker.main([str(job)]) == 1
    event = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert event == {"event": "error", "message": "setting top_k must be a whole number, got 'abc'", "cancelled": False}
    assert worker.main(["--check", str(job)]) == 1


def test_script_and_module_in_fresh_interpreters(tmp_path):
    """The real command lines as processes: `python -m blender_stchain run`, `python -m blender_stchain`
    (bpy module) and `scripts/stchain_run.py` (what `blender -b -P` runs) agree."""
    bad = ["--footage", CAMEL, "--set", "top_k=abc"]
    cmds = {
        "run": [sys.executable, "-m", "blender_stchain", "run", *bad, "--out", str(tmp_path / "r.safetensors")],
        "bpy": [sys.executable, "-m", "blender_stchain", *bad, "--out", str(tmp_path / "b.blend")],
        "script": [sys.executable, str(REPO / "scripts" / "stchain_run.py"), "--", *bad, "--out",
                   str(tmp_path / "s.blend")],
    }
    outs = {k: subprocess.run(c, capture_output=True, text=True, timeout=120, cwd=REPO) for k, c in cmds.items()}
    for name, p in outs.items():
        err = [x for x in p.stderr.splitlines() if x.strip()]
        print(name, p.returncode, err)
        assert p.returncode == 1 and err == [BAD[0][1]]


@pytest.fixture
def temp_dir(tmp_path, monkeypatch):
    """A temp folder of our own: every temporary file of a job lands here (or in no temp folder at all)."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("mode", ["ok", "raise", "hang"])
def test_no_files_left_in_temp(registered, tmp_path, temp_dir, monkeypatch, mode):
    """Success, failure and cancel: the exported frames, job.json and the worker's result are all gone;
    on success the result lives beside the .blend."""
    for k, v in stub_env(mode).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("STCHAIN_WORKER_MODULE", "stub_worker")
    if mode == "hang":
        def press_cancel():
            while "job" not in ops._active or not getattr(ops._active["job"].runner, "alive", False):
                time.sleep(0.01)
            time.sleep(0.3)
            ops._active["job"].cancel()

        threading.Thread(target=press_cancel, daemon=True).start()
    out = tmp_path / "out" / "o.blend"
    rc = headless.main(["--footage", CAMEL, "--frames", "1:3", "--out", str(out)])
    left = _files(temp_dir)
    print(mode, rc, left)
    assert rc == {"ok": 0, "raise": 1, "hang": 2}[mode]
    assert left == []
    kept = sorted(p.name for p in out.parent.iterdir()) if out.parent.exists() else []
    assert kept == (["o.blend", "o_4dmesh.safetensors"] if mode == "ok" else [])


def test_stale_job_folders_are_cleaned(registered, temp_dir, tmp_path, monkeypatch):
    from blender_stchain.bl import prefs, runner

    jobs = prefs.user_dir("jobs")
    dead = jobs / "job-crashed"
    (dead / "footage").mkdir(parents=True)
    (dead / "footage" / "000001.npy").write_bytes(b"x" * 1000)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (dead / runner.OWNER).write_text(child.stdout.strip())  # a Blender that is gone
    mine = runner.new_job_dir(jobs)
    assert not dead.exists() and mine.is_dir()
    runner.clean_stale(jobs)
    assert mine.is_dir()  # its Blender (this process) is alive
    runner.remove_job_dir(mine)


def test_fresh_session_blend_holds_only_our_objects(tmp_path):
    """`python -m blender_stchain OPTIONS` starts from Blender's factory scene (cube, light, camera); the saved
    .blend holds only the job's mesh and camera. A video is decoded by Blender without its per-frame lines."""
    env = stub_env("ok")
    env["STCHAIN_WORKER_MODULE"] = "stub_worker"
    out = tmp_path / "fresh.blend"
    p = subprocess.run([sys.executable, "-m", "blender_stchain", "--footage", str(DATA / "videos" / "bear.mp4"),
                        "--frames", "1:3", "--out", str(out), "--json"],
                       env=env, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    events = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert events and all("event" in e for e in events)
    assert "Saved: " not in p.stdout + p.stderr
    check = ("import bpy, json; bpy.ops.wm.open_mainfile(filepath=%r); "
             "print(json.dumps(sorted(o.name for o in bpy.data.objects)))" % str(out))
    q = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert json.loads(q.stdout.strip().splitlines()[-1]) == ["4D Mesh", "4D Mesh camera"]
