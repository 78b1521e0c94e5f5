"""JOBS parsing and the ``--resume`` identity (no Ray, no torch: fast)."""

import io
import json
import os
import shutil

import pytest

from blender_stchain.batch.identity import job_hash
from blender_stchain.batch.jobs import parse_jobs
from blender_stchain.batch.summary import ClipRecord, Progress, finished_before, sidecar, write_json_atomic
from blender_stchain.contracts.errors import StchainError

from ..conftest import DATA

DEFAULTS = {"weights": "/w", "preset": "fast", "settings": {"top_k": 4}, "allow_random_weights": True}
CAMEL = DATA / "rgba_frames/davis_camel"


def write_lines(path, *lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_json_lines_resolve_paths_apply_defaults_and_keep_bad_lines_as_errors(tmp_path):
    (tmp_path / "clips" / "a").mkdir(parents=True)
    jobs = write_lines(tmp_path / "jobs.jsonl",
                       {"footage": "clips/a", "frames": "2:5", "set": {"landmarks": 64}, "method": "actionmesh"},
                       "# a comment",
                       {"footage": str(CAMEL), "name": "cam el!", "preset": "quality"},
                       "{not json",
                       {"footage": "x.mp4", "colour": "red"},
                       {"footage": "y.mp4", "name": "cam_el"},
                       {"footage": "z.mp4", "method": "nope"},
                       {"masks": "m"})
    clips = parse_jobs(str(jobs), tmp_path / "out", DEFAULTS)
    assert [c.name for c in clips] == ["a", "cam_el", "line", "x", "cam_el", "z", "clip"]
    a, cam = clips[0], clips[1]
    assert a.error is None and a.spec["footage"] == str(tmp_path / "clips" / "a")
    assert a.spec["frames"] == [2, 5] and a.spec["method"] == "actionmesh" and a.spec["weights"] == "/w"
    assert a.spec["settings"] == {"top_k": 4, "landmarks": 64}  # line overrides join the defaults
    assert a.result == str(tmp_path / "out" / "a.safetensors") and a.source == f"{jobs}:1"
    assert cam.error is None and cam.spec["preset"] == "quality" and cam.source == f"{jobs}:3"
    errors = [c.error for c in clips[2:]]
    assert "not valid JSON" in errors[0] and errors[0].startswith(f"{jobs}:4: ")
    assert "unknown key(s) colour" in errors[1]
    assert "name 'cam_el' is used by an earlier job" in errors[2]
    assert "method 'nope' is not one of chain, actionmesh" in errors[3]
    assert "'footage' is required" in errors[4]


def test_folder_of_clips_takes_subfolders_and_videos_with_unique_names(tmp_path):
    for d in ("b", "a"):
        (tmp_path / d).mkdir()
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden").mkdir()
    clips = parse_jobs(str(tmp_path), tmp_path / "out", DEFAULTS)
    assert [(c.name, os.path.basename(c.spec["footage"])) for c in clips] == [("a", "a"), ("a-2", "a.mp4"),
                                                                              ("b", "b")]
    assert all(c.error is None for c in clips)
    globbed = parse_jobs(str(tmp_path / "*.mp4"), tmp_path / "out", DEFAULTS)
    assert [c.name for c in globbed] == ["a"]


def test_jobs_that_hold_no_clips_say_what_jobs_can_be(tmp_path):
    shutil.copy(CAMEL / "00.png", tmp_path / "00.png")
    with pytest.raises(StchainError, match="holds files but no clips"):
        parse_jobs(str(tmp_path), tmp_path / "out", DEFAULTS)
    with pytest.raises(StchainError, match="not a folder of clips, a glob or a .jsonl"):
        parse_jobs(str(tmp_path / "missing"), tmp_path / "out", DEFAULTS)
    with pytest.raises(StchainError, match="holds no clips"):
        parse_jobs(str(tmp_path / "*.mp4"), tmp_path / "out", DEFAULTS)


def test_job_hash_follows_content_and_settings_not_timestamps_or_device(tmp_path):
    clip = tmp_path / "clip"
    shutil.copytree(CAMEL, clip)
    spec = {"footage": str(clip), "out": "o.safetensors", "preset": "fast", "frames": [1, 4]}
    h = job_hash(spec)
    os.utime(clip / "00.png", (1, 1))  # a copy on another node has other mtimes
    assert job_hash(spec) == h and job_hash({**spec, "device": "cpu"}) == h
    assert job_hash({**spec, "settings": {"landmarks": 64}}) != h
    assert job_hash({**spec, "preset": "balanced"}) != h and job_hash({**spec, "frames": [1, 5]}) != h
    data = bytearray((clip / "03.png").read_bytes())
    data[-20] ^= 1  # one edited byte in one frame
    (clip / "03.png").write_bytes(bytes(data))
    assert job_hash(spec) != h


def test_resume_needs_the_result_its_blend_and_the_same_hash(tmp_path):
    result = tmp_path / "a.safetensors"
    assert not finished_before(str(result), "h1", blend=False)
    result.write_bytes(b"r")
    assert not finished_before(str(result), "h1", blend=False)  # no job file: made by something else
    write_json_atomic(sidecar(result), {"hash": "h1", "job": {}})
    assert sidecar(result).name == "a.job.json"
    assert finished_before(str(result), "h1", blend=False)
    assert not finished_before(str(result), "h2", blend=False)
    assert not finished_before(str(result), "h1", blend=True)
    (tmp_path / "a.blend").write_bytes(b"b")
    assert finished_before(str(result), "h1", blend=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.blend", "a.job.json", "a.safetensors"]


def test_progress_line_counts_and_eta_for_a_log():
    stream = io.StringIO()
    progress = Progress(4, stream)
    records = [ClipRecord(n, status=s) for n, s in zip("abcd", ("done", "running", "failed", "pending"))]
    progress.show(records)
    progress.show(records)  # same counts: a log gets no second line
    records[1].status = "cancelled"
    progress.show(records)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("batch [##########..........] 1/4 done, 1 failed, 2 left (1 running)")
    assert "ETA" in lines[0] and "1 cancelled, 1 left (0 running)" in lines[1]
