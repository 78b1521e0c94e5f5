"""The camera stage as the pipeline wires it: model-image matches through the real crop of real
footage -> footage pixels and uncertainties -> solve -> verdict -> events and metadata. The camera
itself is checked against the truth, so a default-camera fallback cannot pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blender_stchain.contracts.progress import Reporter
from blender_stchain.contracts.result import load_result
from blender_stchain.contracts.settings import Settings
from blender_stchain.engine.camera import stage
from blender_stchain.engine.chain.window import WindowTracks
from blender_stchain.engine.footage import open_footage
from blender_stchain.engine.footage.preprocess import clip_crop_map
from blender_stchain.engine.methods import method
from blender_stchain.engine.pipeline import run
from tests.conftest import DATA
from tests.engine.attention_matches import accuracy, generate
from tests.engine.test_pipeline import quick_job

CAMEL = DATA / "rgba_frames" / "davis_camel"


@pytest.fixture(scope="module")
def camel():
    with pytest.warns(UserWarning, match="touches the frame border"):
        clip = open_footage(CAMEL, frames=(1, 16))
    yield clip, clip_crop_map(clip)
    clip.close()


def as_window(m, clip, cmap) -> WindowTracks:
    """What a window would hand over for these matches: model-image pixels and uncertainties."""
    delivered = m.points2d * np.asarray(clip.scale)
    to_model = float(np.mean(cmap.scale)) * float(np.mean(clip.scale))
    f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    return WindowTracks(f32(m.points3d), torch.ones(m.weights.shape), f32(cmap.to_model(delivered)), f32(m.weights),
                        torch.zeros(1), image_sigma=f32(m.sigma * to_model))


def test_stage_recovers_the_camera_through_the_crop_and_reports_it(camel):
    clip, cmap = camel
    m = generate("mushroom", "orbit", "moderate", image_size=tuple(int(v) for v in clip.source_size))
    matches = stage.Matches(len(m.points3d), m.points3d.shape[1])
    window = as_window(m, clip, cmap)
    matches.put(0, m.points3d, *stage.window_matches(window, clip, cmap, 0, np.ones(m.weights.shape)))
    assert np.allclose(matches.points2d, m.points2d, atol=0.05)  # the crop round trip is exact
    assert np.allclose(matches.sigma, m.sigma, rtol=0.02)
    events = []
    sol = stage.run(matches, clip, m.vertices, m.faces, m.landmark_ids, Settings(), Reporter(events.append, None,
                                                                                          method("chain").plan),
                    use_masks=False)  # the camel's masks are not this mesh's outline
    a = accuracy(sol, m)
    print(f"\nstage on {clip.source_size} footage: focal {100 * a['focal']:.2f}%, rotation max "
          f"{a['rotation_deg']:.3f} deg, centre max {100 * a['centre']:.2f}%")
    # the wiring check: a fallback camera is tens of percent and degrees off; the accuracy bar of
    # accuracy is asserted on HD footage in test_camera_attention (this footage is 512 px square)
    assert sol.estimated and a["focal"] < 0.05 and a["rotation_deg"] < 2.0 and a["centre"] < 0.05, (sol.reason, a)
    meta = stage.metadata(sol)
    assert meta["status"] == "estimated" and meta["reason"] is None and meta["frames_ok"] == 16
    lo, hi = meta["focal_px_interval"]
    assert lo < meta["focal_px"] < hi and meta["focal_source"] == "solved"  # the camel's PNGs carry no lens
    assert not [e for e in events if e["event"] == "warning"]
    assert any(e["event"] == "progress" and e["message"].startswith("camera: median error") for e in events)
    assert [e["message"] for e in events if e["event"] == "progress"][0] == "solving the camera"  # no lens known


def test_a_given_lens_fixes_the_focal_and_is_reported(camel):
    """--focal-mm 50 on a 36 mm sensor: the focal is 50/36 of the footage width, says so, has no interval."""
    clip, _ = camel
    W = int(clip.source_size[0])
    m = generate("octopus", "orbit", "moderate", image_size=tuple(int(v) for v in clip.source_size),
                 fov_deg=float(np.degrees(2 * np.arctan(0.5 * 36 / 50))))  # the lens the user gives
    matches = stage.Matches(len(m.points3d), m.points3d.shape[1])
    matches.put(0, m.points3d, m.points2d, m.weights, m.sigma)
    events = []
    sol = stage.run(matches, clip, m.vertices, m.faces, m.landmark_ids, Settings(camera_focal_mm=50.0),
                    Reporter(events.append, None, method("chain").plan), use_masks=False)
    assert sol.estimated and sol.K[0, 0] == pytest.approx(50 / 36 * W) == pytest.approx(m.K[0, 0])
    meta = stage.metadata(sol)
    assert meta["focal_source"] == "given" and meta["focal_px_interval"] is None
    first = [e["message"] for e in events if e["event"] == "progress"][0]
    assert first == f"solving the camera with the focal length {50 / 36 * W:,.0f} px (given)"
    assert accuracy(sol, m)["rotation_deg"] < 2.0


def test_low_confidence_peaks_are_no_match(camel):
    clip, cmap = camel
    m = generate("octopus", "static", "moderate", image_size=tuple(int(v) for v in clip.source_size))
    m.weights[:, ::2] = 0.01  # flat attention maps
    _, w, _ = stage.window_matches(as_window(m, clip, cmap), clip, cmap, 0, np.ones(m.weights.shape))
    assert (w[:, ::2] == 0).all() and (w[:, 1::2] > 0).all()


def test_unusable_matches_say_camera_not_estimated_in_events_and_metadata(camel):
    clip, _ = camel
    m = generate("octopus", "orbit", "garbage", image_size=tuple(int(v) for v in clip.source_size))
    matches = stage.Matches(len(m.points3d), m.points3d.shape[1])
    matches.put(0, m.points3d, m.points2d, m.weights, m.sigma)
    events = []
    sol = stage.run(matches, clip, m.vertices, m.faces, m.landmark_ids, Settings(), Reporter(events.append, None,
                                                                                          method("chain").plan),
                    use_masks=False)  # the camel's masks are not this mesh's outline
    meta = stage.metadata(sol)
    assert meta["status"] == "not estimated" and meta["reason"]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any(w.startswith("camera not estimated (") for w in warnings)
    assert any(e["event"] == "progress" and e["message"] == "camera: camera not estimated" for e in events)


def test_random_weight_run_reports_camera_not_estimated(tiny_weights, tmp_path):
    events = []
    path = run(quick_job(CAMEL, tmp_path / "r.safetensors", tiny_weights), on_event=events.append)
    cam = load_result(path).metadata["camera"]
    print(f"\nrandom weights: camera {cam['status']} ({cam['reason']})")
    assert cam["status"] == "not estimated" and cam["reason"]
    assert cam["focal_px_interval"] is None and cam["focal_source"] == "default camera"
    assert any(e["event"] == "warning" and e["message"].startswith("camera not estimated") for e in events)
