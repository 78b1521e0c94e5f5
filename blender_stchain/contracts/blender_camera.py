"""OpenCV camera -> Blender camera data, in numpy (no bpy: the scene writer applies the values).

Conventions:
- OpenCV camera space: x right, y down, z forward. Blender camera space: x right, y up, looking
  down -z. The two differ by ``diag(1, -1, -1)``.
- Object space is the backbone's (glTF-like) y-up space; Blender's world is z-up. ``OBJECT_TO_BLENDER``
  maps one to the other with a +90 degree rotation about x: (x, y, z) -> (x, -z, y), determinant +1
  (a rotation, never a mirror). Apply it to the mesh vertices (``to_blender_world``) and use the
  ``matrix_world`` computed here, and the camera view matches the footage.
- Pixels: origin at the top-left corner, pixel centres at half-integers (as in ``engine.camera``).
  Blender's camera frame spans the whole render, so pixel (x, y) is frame coordinate
  (x / W, 1 - y / H) in ``bpy_extras.object_utils.world_to_camera_view``.
- Blender's view plane (``BKE_camera_params_compute_viewplane``): the sensor dimension named by the
  fit spans ``viewfac`` pixels, ``viewfac = W`` for a horizontal fit and ``H * yasp / xasp`` for a
  vertical one; AUTO picks horizontal when ``W * xasp >= H * yasp`` and then always uses
  ``sensor_width``. Shifts are in units of ``viewfac``. Non-square pixels (fx != fy) become the
  pixel aspect: ``yasp / xasp = fx / fy``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OBJECT_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_CV_TO_BLENDER_CAMERA = np.diag([1.0, -1.0, -1.0])
SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")


@dataclass
class BlenderCamera:
    """Values for ``bpy.types.Camera`` / the camera object / ``scene.render``."""

    matrix_world: np.ndarray  # (T, 4, 4) camera object, Blender world (z-up)
    lens: float  # mm
    sensor_width: float  # mm
    sensor_height: float  # mm
    sensor_fit: str  # AUTO | HORIZONTAL | VERTICAL
    shift_x: float
    shift_y: float
    resolution_x: int
    resolution_y: int
    pixel_aspect_x: float
    pixel_aspect_y: float


def to_blender_world(points: np.ndarray, axis: np.ndarray = OBJECT_TO_BLENDER) -> np.ndarray:
    """Object-space points (..., 3) -> Blender world (..., 3), the same map the camera gets."""
    return np.asarray(points) @ np.asarray(axis).T


def _fit_axis(sensor_fit: str, W: int, H: int, xasp: float, yasp: float) -> str:
    if sensor_fit == "AUTO":
        return "HORIZONTAL" if W * xasp >= H * yasp else "VERTICAL"
    return sensor_fit


def blender_camera(
    K: np.ndarray,
    world_to_camera: np.ndarray,
    image_size: tuple[int, int],
    sensor_fit: str = "AUTO",
    sensor_width: float = 36.0,
    sensor_height: float | None = None,
    axis: np.ndarray = OBJECT_TO_BLENDER,
) -> BlenderCamera:
    """Blender camera data from OpenCV ``K`` (3,3), ``world_to_camera`` ((T,)4,4) and (W, H).

    ``sensor_height`` defaults to keep the sensor's aspect equal to the image's.
    """
    if sensor_fit not in SENSOR_FITS:
        raise ValueError(f"sensor_fit must be one of {SENSOR_FITS}, got {sensor_fit!r}")
    K = np.asarray(K, np.float64)
    if abs(K[0, 1]) > 1e-9 * K[0, 0]:
        raise ValueError("Blender cameras cannot represent a skewed K (K[0,1] != 0)")
    W, H = int(image_size[0]), int(image_size[1])
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    ratio = fx / fy  # = yasp / xasp
    xasp, yasp = (1.0, ratio) if ratio >= 1 else (1.0 / ratio, 1.0)
    sensor_height = sensor_width * H / W if sensor_height is None else float(sensor_height)
    fit = _fit_axis(sensor_fit, W, H, xasp, yasp)
    viewfac = W if fit == "HORIZONTAL" else H * ratio
    sensor = sensor_width if (sensor_fit == "AUTO" or fit == "HORIZONTAL") else sensor_height
    return BlenderCamera(
        matrix_world=camera_matrix_world(world_to_camera, axis),
        lens=float(fx * sensor / viewfac),
        sensor_width=float(sensor_width),
        sensor_height=float(sensor_height),
        sensor_fit=sensor_fit,
        shift_x=float((W / 2 - cx) / viewfac),
        shift_y=float((cy - H / 2) * ratio / viewfac),  # a pixel row is `ratio` x-units tall
        resolution_x=W,
        resolution_y=H,
        pixel_aspect_x=float(xasp),
        pixel_aspect_y=float(yasp),
    )


def camera_matrix_world(world_to_camera: np.ndarray, axis: np.ndarray = OBJECT_TO_BLENDER) -> np.ndarray:
    """OpenCV world_to_camera ((T,)4,4) in object space -> Blender camera matrix_world ((T,)4,4).

    With p_world = A p_object and b = D (R p_object + t) the Blender camera-space point:
    matrix_world = [[A R^T D, -A R^T t], [0, 1]].
    """
    w2c = np.asarray(world_to_camera, np.float64)
    A = np.asarray(axis, np.float64)
    if abs(np.linalg.det(A) - 1) > 1e-6 or not np.allclose(A @ A.T, np.eye(3), atol=1e-6):
        raise ValueError("the object -> Blender axis map must be a proper rotation (det +1)")
    R, t = w2c[..., :3, :3], w2c[..., :3, 3]
    Rt = np.swapaxes(R, -1, -2)
    out = np.zeros(w2c.shape)
    out[..., :3, :3] = A @ Rt @ _CV_TO_BLENDER_CAMERA
    out[..., :3, 3] = -(A @ Rt @ t[..., None])[..., 0]
    out[..., 3, 3] = 1.0
    return out
