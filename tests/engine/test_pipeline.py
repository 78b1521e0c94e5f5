"""The whole engine on real footage with random checkpoints (smoke tests of every stage)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blender_stchain.contracts.errors import Cancelled, WeightsError
from blender_stchain.contracts.job import JobSpec
from blender_stchain.contracts.result import load_result
from blender_stchain.engine.pipeline import run
from tests.conftest import DATA, REPO
from tests.helpers import QUICK, peak_rss_mb, quick_job


def assert_valid(r, frames):
    assert list(r.frame_numbers) == list(frames)
    T, Nv, _ = r.vertices.shape
    assert T == len(frames) and Nv > 100 and r.faces.max() < Nv and r.faces.min() >= 0
    assert np.isfinite(r.vertices).all() and np.isfinite(r.confidence).all()
    assert (r.confidence >= 0).all() and (r.confidence <= 1).all()
    assert np.isfinite(r.K).all() and np.isfinite(r.world_to_camera).all()
    assert r.tracks_2d.shape[:2] == r.track_visible.shape == (T, min(QUICK["landmarks"], Nv))
    assert r.metadata["smoke_test"] is True


@pytest.mark.slow
def test_chain_small_weights_48_frames_in_four_windows(small_weights, tmp_path):
    events = []
    job = quick_job(DATA / "horsejump_gt/video", tmp_path / "r.safetensors", small_weights,
                    masks=str(DATA / "horsejump_gt/masks"), frames=(1, 48))
    r = load_result(run(job, on_event=events.append))
    assert_valid(r, range(1, 49))
    stages = [e["message"] for e in events if e["event"] == "progress" and e["stage"] == "windows"]
    assert any("window 4/4" in m for m in stages) and not any("window 5/" in m for m in stages)
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("SMOKE TEST" in e.get("message", "") for e in events if e["event"] == "warning")
    moved = np.abs(r.vertices - r.vertices[:1]).max()
    print(f"48 frames, {r.vertices.shape[1]} vertices, {len(r.faces)} faces, max motion {moved:.3f}, "
          f"seconds {r.metadata['seconds']}")
    assert moved > 1e-3  # chained positions reach the mesh (random weights: arbitrary motion)
    assert list(tmp_path.iterdir()) == [tmp_path / "r.safetensors"]  # no spool left behind


def test_actionmesh_baseline_mode_writes_the_same_contract(tiny_weights, tmp_path):
    job = quick_job(DATA / "rgba_frames/davis_camel", tmp_path / "b.safetensors", tiny_weights, method="actionmesh")
    r = load_result(run(job))
    assert_valid(r, range(1, 17))
    assert r.metadata["method"] == "actionmesh" and r.metadata["settings"]["baseline_steps"] == 6


def test_random_weights_are_refused_unless_asked(tiny_weights, tmp_path):
    job = quick_job(DATA / "rgba_frames/davis_camel", tmp_path / "x.safetensors", tiny_weights)
    job.allow_random_weights = False
    with pytest.raises(WeightsError, match="allow-random-weights"):
        run(job)
    assert list(tmp_path.iterdir()) == []


def test_cancel_between_steps_leaves_nothing(tiny_weights, tmp_path):
    seen = []

    def cancel():
        return len(seen) > 5

    job = quick_job(DATA / "rgba_frames/davis_camel", tmp_path / "c.safetensors", tiny_weights)
    with pytest.raises(Cancelled):
        run(job, on_event=seen.append, cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def worker(job: JobSpec, tmp_path: Path, cancel_first=False):
    path = job.save(tmp_path / "job.json")
    if cancel_first:
        Path(str(path) + ".cancel").touch()
    out = subprocess.run([sys.executable, "-m", "blender_stchain.engine.worker", str(path)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    return out.returncode, [json.loads(line) for line in out.stdout.splitlines()], out.stderr


@pytest.mark.slow
def test_worker_process_streams_json_lines_and_writes_the_result(tiny_weights, tmp_path):
    job = quick_job(DATA / "rgba_frames/davis_camel", tmp_path / "w.safetensors", tiny_weights)
    code, events, _ = worker(job, tmp_path)
    assert code == 0 and events[-1] == {"event": "done", "result": str(tmp_path / "w.safetensors")}
    assert {e["event"] for e in events} == {"progress", "warning", "done"}
    assert_valid(load_result(tmp_path / "w.safetensors"), range(1, 17))


@pytest.mark.parametrize("case", ["cancelled", "missing weights", "bad footage"])
def test_worker_failures_give_one_message_and_no_files(case, tiny_weights, tmp_path):
    footage = DATA / "rgba_frames/davis_camel" if case != "bad footage" else tmp_path / "nope"
    weights = tiny_weights if case != "missing weights" else tmp_path / "empty"
    job = quick_job(footage, tmp_path / "out" / "r.safetensors", weights)
    code, events, _ = worker(job, tmp_path, cancel_first=case == "cancelled")
    assert events[-1]["event"] == "error" and code == (2 if case == "cancelled" else 1), events[-1]
    print(case, "->", events[-1]["message"])
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_cli_run_reports_bad_input_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "blender_stchain", "run", "--footage", str(tmp_path / "missing"),
                          "--out", str(tmp_path / "r.safetensors")], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "footage not found" in out.stderr


@pytest.mark.slow
def test_peak_memory_is_flat_in_clip_length(tiny_weights, tmp_path):
    short, long = peak_rss_mb(48, tiny_weights, tmp_path), peak_rss_mb(200, tiny_weights, tmp_path)
    print(f"peak RSS: 48 frames {short:.0f} MB, 200 frames {long:.0f} MB ({long / short - 1:+.1%})")
    assert long <= 1.10 * short


def test_camera_moves_keeps_every_image_and_removes_the_rigid_motion(tiny_weights, tmp_path):
    """Both presentations project every vertex to the same pixels; "camera moves" holds the mesh still."""
    from blender_stchain.engine.camera import project

    results = {}
    for mode in ("object_moves", "camera_moves"):
        job = quick_job(DATA / "rgba_frames/davis_camel", tmp_path / f"{mode}.safetensors", tiny_weights,
                        settings={"camera_mode": mode})
        results[mode] = load_result(run(job))
    a, b = results["object_moves"], results["camera_moves"]
    assert_valid(b, range(1, 17))
    pa = project(a.K.astype(float), a.world_to_camera.astype(float), a.vertices.astype(float))
    pb = project(b.K.astype(float), b.world_to_camera.astype(float), b.vertices.astype(float))
    ok = np.isfinite(pa).all(-1) & np.isfinite(pb).all(-1)
    print(f"camera moves: max image difference {np.abs(pa - pb)[ok].max():.2e} px")
    assert ok.mean() > 0.99 and np.abs(pa - pb)[ok].max() < 1e-2


def test_capture_layers_setting_chooses_the_averaged_layers(tiny_weights):
    import torch

    from blender_stchain.engine.backbone import load_backbone

    bb = load_backbone(tiny_weights, allow_random=True)
    ctx = torch.randn(4, 257, 32, generator=torch.Generator().manual_seed(0))
    z = torch.randn(bb.num_tokens, bb.latent_channels, generator=torch.Generator().manual_seed(1))
    def attention(layers):
        return bb.stage1(ctx, 0, z, 2, None, 0, capture_layers=layers).token_attention

    first = attention((0,))
    assert torch.equal(first, attention((0,)))  # deterministic, so a difference below is the layers'
    assert (first - attention((0, 3, 6))).abs().max() > 1e-4


def test_frames_are_decoded_once_on_the_host_thread(tiny_weights, tmp_path, monkeypatch):
    """Host work beside the model: each window's frames are decoded once, on the host thread, while the model works
    on the anchor or the previous window; only the anchor frame and the frames two windows share are
    decoded again."""
    import threading

    from blender_stchain.engine.footage import reader

    reads = []
    original = reader.Footage.read
    monkeypatch.setattr(reader.Footage, "read",
                        lambda self, i: reads.append((i, threading.current_thread().name)) or original(self, i))
    job = quick_job(DATA / "horsejump_gt/video", tmp_path / "r.safetensors", tiny_weights,
                    masks=str(DATA / "horsejump_gt/masks"), frames=(1, 20), settings=dict(window_size=8))
    r = load_result(run(job))
    anchor = r.metadata["anchor_frame"] - 1
    counts = np.bincount([i for i, _ in reads], minlength=20)
    boundaries = [7, 14]  # windows 0-7, 7-14, 14-19 share their first frame with the previous one
    expected = np.ones(20, int)
    expected[boundaries] += 1
    expected[anchor] += 1
    assert counts.tolist() == expected.tolist()
    on_host = [i for i, name in reads if name.startswith("stchain-host")]
    assert len(on_host) == 20 + len(boundaries)  # every window's frames, none on the main thread


def test_windows_are_skinned_and_written_beside_the_next_window(tiny_weights, tmp_path, monkeypatch):
    """Host work beside the model: only each window's last frame (the next window's known frame) is skinned on the
    main thread; the other frames are skinned and written on the host thread while the model works on
    the next window. The file still holds exactly what skinning each whole window at once gives."""
    import threading

    from blender_stchain.contracts.result import ResultWriter
    from blender_stchain.engine import deform

    motions, skinned, writes = [], [], []
    motion, vertices, add = deform.Skinning.motion, deform.Motion.vertices, ResultWriter.add_frames
    monkeypatch.setattr(deform.Skinning, "motion", lambda *a: motions.append(motion(*a)) or motions[-1])
    monkeypatch.setattr(deform.Motion, "vertices", lambda self, a=0, b=None: skinned.append(
        (len(self), a, b, threading.current_thread().name)) or vertices(self, a, b))
    monkeypatch.setattr(ResultWriter, "add_frames", lambda self, **kw: writes.append(
        threading.current_thread().name) or add(self, **kw))
    job = quick_job(DATA / "horsejump_gt/video", tmp_path / "r.safetensors", tiny_weights,
                    masks=str(DATA / "horsejump_gt/masks"), frames=(1, 20), settings=dict(window_size=8))
    r = load_result(run(job))
    assert len(motions) == 3 and len(writes) == 3 and all(name.startswith("stchain-host") for name in writes)
    on_main = [(n, a, b) for n, a, b, name in skinned if name == "MainThread"]
    assert on_main == [(8, 7, None), (8, 7, None), (6, 5, None)]  # the last frame only
    assert [(n, a, b) for n, a, b, name in skinned if name != "MainThread"] == [(8, 0, 7), (8, 1, 7), (6, 1, 5)]
    whole = np.concatenate([vertices(m)[0 if i == 0 else 1:] for i, m in enumerate(motions)])
    assert np.array_equal(r.vertices, whole)


def test_storing_a_window_out_of_memory_runs_it_again_once_and_says_so():
    """A real allocation failure while a window is skinned beside the model: the storing runs once more on
    the main thread, with a warning; any other failure is raised as it is, not run again."""
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    import torch

    from blender_stchain.contracts.progress import Reporter
    from blender_stchain.engine.pipeline import _settle, _Storing

    def settle(error):
        calls, warnings = [], []
        r = SimpleNamespace(backbone=SimpleNamespace(device=torch.device("cpu")),
                            rep=Reporter(lambda e: warnings.append(e.message), None, {"windows": 1.0}))

        def work():
            calls.append(1)
            if len(calls) == 1:
                error()

        with ThreadPoolExecutor(1) as pool:
            storing = _Storing(work, pool.submit(work))
            try:
                _settle(r, storing)
            except ValueError:
                pass
        return len(calls), warnings

    calls, warnings = settle(lambda: np.empty(1 << 50, np.uint8))
    assert calls == 2 and len(warnings) == 1 and "out of memory on cpu skinning a window" in warnings[0]
    calls, warnings = settle(lambda: int("not a number"))
    assert calls == 1 and warnings == []


def test_stage0_models_are_gone_before_the_anchor_surface_is_decoded(tiny_weights, tmp_path, monkeypatch):
    """The decoder's queries are the run's largest activations: the DiT and its DINOv2 copy must be freed
    before the anchor's surface is decoded, not after (GPU peak), and stay with a shared backbone."""
    from blender_stchain.engine.backbone import facade

    seen = []
    sdf = facade.Backbone.sdf
    monkeypatch.setattr(facade.Backbone, "sdf", lambda self, latent: seen.append(set(self.models)) or sdf(self, latent))
    job = quick_job(DATA / "rgba_frames/davis_camel", tmp_path / "r.safetensors", tiny_weights)
    run(job)
    assert seen and seen[0] == {"dinov2", "vae", "denoiser"}  # the anchor surface: stage-I models and the VAE

    from blender_stchain.engine.backbone import load_backbone

    cache = {}

    def shared(*args):  # a batch worker's cache: the same backbone for every clip
        return cache.setdefault("bb", load_backbone(*args))

    seen.clear()
    run(quick_job(DATA / "rgba_frames/davis_camel", tmp_path / "s.safetensors", tiny_weights), backbones=shared)
    assert {"transformer", "image_encoder_dinov2"} <= seen[0] and {"transformer"} <= set(cache["bb"].models)


def test_out_of_memory_on_the_anchor_surface_retries_the_surface_alone(tiny_weights, tmp_path, monkeypatch):
    """A real allocation failure in the anchor surface's first decoder call: the surface is decoded again
    with quartered chunks (one warning saying so), stage 0 is not sampled again (its models are gone by
    then), and the run completes."""
    from blender_stchain.engine.backbone import facade

    sampled, chunks, events = [], [], []
    sample, sdf = facade.Backbone.sample_anchor, facade.Backbone.sdf
    monkeypatch.setattr(facade.Backbone, "sample_anchor", lambda self, *a: sampled.append(1) or sample(self, *a))

    def failing_once(self, latent):
        fn = sdf(self, latent)

        def query(points):
            chunks.append(len(points))
            if len(chunks) == 1:
                np.empty(1 << 50, np.uint8)  # the CPU allocator refuses: a real MemoryError
            return fn(points)
        return query

    monkeypatch.setattr(facade.Backbone, "sdf", failing_once)
    job = quick_job(DATA / "rgba_frames/davis_camel", tmp_path / "r.safetensors", tiny_weights)
    r = load_result(run(job, on_event=events.append))
    retries = [e["message"] for e in events if e["event"] == "warning" and "out of memory" in e["message"]]
    assert sampled == [1] and len(retries) == 1 and "quartered chunks (decode_chunk 65536" in retries[0]
    assert r.vertices.shape[0] == 16 and len(chunks) > 1
