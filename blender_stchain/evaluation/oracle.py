"""The oracle: GT tracks through the dense-motion and camera stages instead of the model.

It proves the harness: with what a perfect backbone would hand over (the GT positions of the
landmarks, GT 2D-3D matches), ``engine.deform.propagate`` and ``engine.camera.solve_long`` must give a
result that scores near-perfect, so a bad score later is the model's, not the metrics'.
"""

from __future__ import annotations

import time

import numpy as np

from ..contracts.result import Result
from ..contracts.settings import Settings
from ..engine import camera, deform
from .bench import Clip
from .errors import EvalError


def oracle_result(clip: Clip, settings: Settings) -> Result:
    if clip.vertices is None or not clip.has_camera or not clip.has_tracks:
        raise EvalError(f"clip {clip.name}: --oracle needs a GT mesh, camera and 2D tracks (eval make-bench clips)")
    seconds = {}
    t = time.perf_counter()
    V, F = np.asarray(clip.vertices, np.float64), np.asarray(clip.faces)
    ids = deform.farthest_point_landmarks(V[0], settings.landmarks)
    verts = deform.propagate(V[0], F, ids, V[:, ids], np.ones((len(V), len(ids))), **settings.to_dict())
    seconds["windows"] = time.perf_counter() - t
    t = time.perf_counter()
    gt3d = V[:, clip.track_ids]
    sol = camera.solve_long(gt3d, clip.tracks_2d, clip.track_visible.astype(np.float64), clip.image_size,
                            focal_px=settings.camera_focal_px, smoothness=settings.camera_smoothness)
    tracks, visible = camera.tracks_2d(verts, F, ids, sol.K, sol.world_to_camera, clip.image_size)
    seconds["camera"] = time.perf_counter() - t
    return Result(faces=F, vertices=verts, confidence=np.ones(verts.shape[:2], np.float32),
                  frame_numbers=np.arange(1, len(V) + 1), K=sol.K, world_to_camera=sol.world_to_camera,
                  image_size=np.asarray(clip.image_size), tracks_2d=tracks, track_visible=visible,
                  track_vertex_ids=ids,
                  metadata={"method": "oracle", "smoke_test": False, "seconds": {k: round(v, 3) for k, v in seconds.items()},
                            "camera": {"warnings": list(sol.warnings)}})
