"""Dense motion: every anchor vertex follows the landmarks by geodesic rigid skinning (docs/architecture.md 5.6)."""

from .motion import (
    DeformSettings,
    Motion,
    Skinning,
    farthest_point_landmarks,
    nearest_landmarks,
    propagate,
)

__all__ = ["DeformSettings", "Motion", "Skinning", "farthest_point_landmarks", "nearest_landmarks", "propagate"]
