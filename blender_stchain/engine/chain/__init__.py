"""The attention chain: windows over the clip (``windows``), one truncated stage-I run per window
with the chain hops and the sharp blend (``window``, ``blend``), 2D matches for the camera
(``correspond``), and the ActionMesh reference mode on the same engine (``baseline``)."""

from .blend import (
           BlendResult,
           blend,
           blend_scores,
           closest_point_on_triangles,
           project_to_surface,
           token_to_surface,
)

__all__ = ["BlendResult", "blend", "blend_scores", "closest_point_on_triangles", "project_to_surface",
           "token_to_surface"]
