"""Camera from 2D-3D matches: one pinhole intrinsic set per clip and a pose per frame.

Conventions (OpenCV): ``world_to_camera`` maps object-space points to camera space with x right,
y down, z forward (points in front have z > 0). Pixel coordinates are continuous with the origin at
the top-left *corner* of the image, so pixel (i, j) has its centre at (i + 0.5, j + 0.5) and the
image centre is exactly (W / 2, H / 2); this is the convention Blender's camera frame uses too.

The solve is robust: a calibrated DLT inside RANSAC over a few focal candidates gives the start
(``initial``), then Levenberg-Marquardt with a Cauchy loss (IRLS, scale annealed) refines every pose
and the shared intrinsics together (``refine``, block-structured normal equations in ``blocks``),
with an optional second-difference smoothness prior and an optional silhouette term
(``silhouette``). The camera model (``models``: projection and Jacobians) is the one place that
knows the intrinsics. Thresholds are in the matches' uncertainties when they are given. Frames that
cannot be solved alone (too few matches, coplanar points) are reported in ``warnings`` and get their
pose from their neighbours. ``interval`` profiles the final cost over the focal for the focal's 95%
interval (what the footage cannot pin down: a longer lens further back). ``quality`` gathers the evidence ``plausible`` judges; ``stage`` is the
pipeline's camera stage (solve, visibility, refinement, verdict). ``motion`` moves the object's
rigid motion into the camera; ``tracks`` projects landmarks to 2D.
"""

from .geometry import project, rigid, rodrigues
from .models import Pinhole
from .motion import PRESENTATIONS, ObjectMotion, object_motion, present, remove_motion
from .silhouette import Silhouette, mask_distance_field
from .solution import CameraSolution, SolveSettings, default_camera, plausible
from .solve import solve, solve_long
from .tracks import tracks_2d

__all__ = [
    "PRESENTATIONS", "CameraSolution", "ObjectMotion", "Pinhole", "Silhouette", "SolveSettings", "default_camera",
    "mask_distance_field", "object_motion", "plausible", "present", "project", "remove_motion", "rigid",
    "rodrigues", "solve", "solve_long", "tracks_2d",
]
