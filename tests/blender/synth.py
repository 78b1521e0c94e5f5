"""Results made from the real animated GLB meshes (shared data) plus a known orbiting camera.

Used by the Blender tests, the stand-in worker and the scene-writer benchmark. The camera and the
2D tracks are plain pinhole maths written here, independent of the code under test.
"""

from __future__ import annotations

import numpy as np

from blender_stchain.contracts.result import Result
from blender_stchain.evaluation.synthetic.scenes import look_at


def project(K, w2c, points) -> np.ndarray:
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    uv = cam @ K.T
    return uv[:, :2] / uv[:, 2:3]


def result_from_npz(npz, frames=None, size=(640, 480), tracks=12, first_frame=1):
    d = np.load(npz)
    verts = d["vertices"]
    if frames is not None:
        reps = -(-frames // len(verts))
        verts = np.concatenate([verts] * reps)[:frames]
    T = len(verts)
    W, H = size
    f = 1.2 * max(W, H)
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], np.float64)
    radius = 4.0 * float(np.ptp(verts[0], axis=0).max())
    center = verts[0].mean(0)
    w2c = np.stack(
        [look_at(center + radius * np.array([np.sin(a), 0.3, np.cos(a)]), center, up=(0.0, 1.0, 0.0)) for a in np.linspace(0, 0.6, T)]
    )
    result = Result(
        faces=d["faces"],
        vertices=verts,
        confidence=np.ones(verts.shape[:2], np.float32),
        frame_numbers=np.arange(first_frame, first_frame + T, dtype=np.int32),
        K=K,
        world_to_camera=w2c,
        image_size=np.array([W, H]),
        metadata={"method": "synthetic", "source": str(npz)},
    )
    if tracks:
        ids = np.linspace(0, verts.shape[1] - 1, tracks).astype(int)
        tr = np.stack([project(K, w2c[t], verts[t, ids]) for t in range(T)])
        visible = np.ones((T, tracks), np.uint8)
        visible[::3, 0] = 0
        # set after construction: contracts.result.validate_shapes cannot check tracks yet (reported)
        result.tracks_2d, result.track_visible = tr.astype(np.float32), visible
    return result
