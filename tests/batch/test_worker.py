"""The clip worker in this process (what each Ray actor runs): results equal to `run`'s, weights loaded once,
failures and cancels leave no file. Ray itself is exercised in test_ray.py."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from blender_stchain.batch.worker import ClipWorker, node_folder

from ..conftest import REPO
from .compare import CAMEL, HORSE, assert_same_result, job_spec


@pytest.fixture(autouse=True)
def keep_threads(monkeypatch):
    """A worker sets its thread count for its process; here that process is pytest: restore it after."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", ""))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_one_worker_runs_clip_after_clip_with_results_equal_to_run(tiny_weights, run_results, tmp_path):
    worker = ClipWorker(threads=1)  # no marker: the folder counts as not shared, bytes come back
    assert worker.shared is False
    for job in (CAMEL, HORSE):
        out = worker.run({"name": job["name"], "spec": job_spec(job, tiny_weights, tmp_path / f"{job['name']}.st")})
        assert out["status"] == "done" and set(out["payload"]) == {"result"}, out
        (tmp_path / "got.safetensors").write_bytes(out["payload"]["result"])
        assert_same_result(tmp_path / "got.safetensors", run_results[job["name"]])
    assert len(worker._backbones) == 1  # the weights were loaded once for both clips
    events = worker.poll()
    ends = [(e["clip"], e["message"]) for e in events if e["event"] == "progress" and e["fraction"] == 1.0]
    assert [c for c, _ in ends] == ["camel", "horse"] and all("result written" in m for _, m in ends)
    assert {e["clip"] for e in events} == {"camel", "horse"} and worker.poll() == []
    assert not (tmp_path / "camel.st").exists()  # nothing written next to the final name by the worker


def test_bad_footage_fails_with_its_reason_and_leaves_no_file(tiny_weights, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(4):
        data = (Path(CAMEL["footage"]) / f"{i:02d}.png").read_bytes()
        (bad / f"{i:02d}.png").write_bytes(data[:300] if i == 2 else data)  # frame 3 truncated
    marker = tmp_path / "out" / ".marker"
    marker.parent.mkdir()
    marker.write_text("token")
    worker = ClipWorker(threads=1, marker=str(marker), token="token")
    assert worker.shared is True
    spec = job_spec({"footage": str(bad)}, tiny_weights, tmp_path / "out/bad.safetensors")
    out = worker.run({"name": "bad", "spec": spec})
    assert out["status"] == "failed" and "cannot read frame 3" in out["message"] and "truncated" in out["message"]
    assert files_under(tmp_path / "out") == [".marker"]


def test_cancel_mid_clip_and_blend_in_a_shared_folder(tiny_weights, run_results, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / ".m").write_text("t")
    worker = ClipWorker(threads=1, marker=str(out_dir / ".m"), token="t")
    clip = {"name": "camel", "spec": job_spec(CAMEL, tiny_weights, out_dir / "camel.safetensors"), "blend": True}
    box = {}
    thread = threading.Thread(target=lambda: box.update(worker.run(clip)))
    thread.start()
    while not any(e.get("stage") == "anchor" for e in worker.poll()):  # cancelled in the middle of the clip
        time.sleep(0.01)
    worker.cancel()
    thread.join(60)
    assert box["status"] == "cancelled" and box["message"] == "cancelled by the user"
    assert files_under(out_dir) == [".m"]

    worker._cancel.clear()
    done = worker.run(clip)
    assert done["status"] == "done" and "payload" not in done
    assert files_under(out_dir) == [".m", "camel.blend", "camel.safetensors"]
    assert list((out_dir / node_folder()).iterdir()) == []
    assert_same_result(out_dir / "camel.safetensors", run_results["camel"])
    assert blend_contents(out_dir / "camel.blend") == [[7, str(out_dir / "camel.safetensors")]]


def blend_contents(path: Path) -> list:
    """[shape keys (Basis + one per frame), the result file the scene records] per mesh of a .blend."""
    check = ("import bpy, json, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); "
             "print(json.dumps([[len(o.data.shape_keys.key_blocks), json.loads(o['stchain'])['result']] "
             "for o in bpy.data.objects if o.type == 'MESH' and o.data.shape_keys]))")
    got = subprocess.run([sys.executable, "-c", check, str(path)], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    return json.loads(got.stdout.strip().splitlines()[-1])
