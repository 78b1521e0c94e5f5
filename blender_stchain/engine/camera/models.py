"""Camera models: the projection and its Jacobians, the one place that knows the intrinsics.

The solver never touches intrinsics directly: RANSAC turns pixels into normalised rays with
``normalise``, the refinement asks ``jacobians`` for d(pixel)/d(camera point) and d(pixel)/d(shared
parameters) and applies its step with ``updated``. A distortion model or a known sensor is one new
class with these five members.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pinhole:
    """Square pixels, focal ``focal`` (px), principal point (cx, cy) (px, top-left pixel corner origin).

    Shared parameters, in this order: log focal (a multiplicative step keeps the focal positive),
    cx, cy. ``free`` names the ones the refinement may change.
    """

    focal: float
    cx: float
    cy: float
    free_focal: bool = True
    free_centre: bool = False

    PARAMETERS = ("log_focal", "cx", "cy")

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.focal, 0.0, self.cx], [0.0, self.focal, self.cy], [0.0, 0.0, 1.0]])

    @property
    def free(self) -> list[int]:
        return ([0] if self.free_focal else []) + ([1, 2] if self.free_centre else [])

    def normalise(self, uv: np.ndarray) -> np.ndarray:
        """Pixels (..., 2) -> normalised image points x / z, y / z."""
        return (uv - np.array([self.cx, self.cy])) / self.focal

    def project(self, cam: np.ndarray) -> np.ndarray:
        """Camera-space points (..., 3), z > 0 -> pixels (..., 2)."""
        z = np.maximum(cam[..., 2:3], 1e-9)
        return self.focal * cam[..., :2] / z + np.array([self.cx, self.cy])

    def jacobians(self, cam: np.ndarray):
        """Pixels (..., 2), d pixel / d cam (..., 2, 3) and d pixel / d free parameters (..., 2, k)."""
        z = np.maximum(cam[..., 2], 1e-9)
        xy = cam[..., :2] / z[..., None]
        pix = self.focal * xy + np.array([self.cx, self.cy])
        dcam = np.zeros(cam.shape[:-1] + (2, 3))
        dcam[..., 0, 0] = dcam[..., 1, 1] = self.focal / z
        dcam[..., :, 2] = -self.focal * xy / z[..., None]
        dint = np.zeros(pix.shape + (3,))
        dint[..., 0] = self.focal * xy
        dint[..., 0, 1] = dint[..., 1, 2] = 1.0
        return pix, dcam, dint[..., self.free]

    def updated(self, step: np.ndarray) -> Pinhole:
        """The model after a step over the free parameters (order of ``free``)."""
        full = np.zeros(3)
        full[self.free] = step
        return Pinhole(self.focal * float(np.exp(full[0])), self.cx + float(full[1]), self.cy + float(full[2]),
                       self.free_focal, self.free_centre)

    def step_ok(self, step: np.ndarray) -> bool:
        """Refuse a focal step over a factor e: far outside the linearisation."""
        return not self.free_focal or abs(float(step[0])) < 1.0
