"""The attention chain (docs/architecture.md 5.1-5.5): the pure maths of the chain product and the sharp blend
(5.5), functions over given maps in device-agnostic torch, so an oracle attention can be fed
in and the same code runs on the GPU in the pipeline. Where the maps come from (truncated stage I
with attention capture) is ``window.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_EPS = 1e-12


@dataclass(frozen=True)
class BlendResult:
    """Per-vertex output of the sharp blend for one frame.

    ``confidence`` is the share of the row's score mass held by its top-k candidates,
    ``sum(top-k scores) / sum(all scores)``, in [0, 1]: near 1 when the chain is peaked on a few
    candidates, near ``k / Nc`` when it is spread evenly over the surface.
    """

    positions: torch.Tensor  # (Nv, 3)
    confidence: torch.Tensor  # (Nv,)
    indices: torch.Tensor | None = None  # (Nv, k) candidate indices, when asked for
    weights: torch.Tensor | None = None  # (Nv, k) blend weights of those candidates


def token_to_surface(P_f: torch.Tensor) -> torch.Tensor:
    """``A_fS`` (N, Nc) from the candidates' cross-attention ``P_f`` (Nc, N).

    Transposed and normalised over candidates, so each token row says where on frame f's
    surface that token lands (docs/architecture.md 5.4).
    """
    A = torch.as_tensor(P_f).transpose(0, 1)
    return A / A.sum(dim=1, keepdim=True).clamp_min(_EPS)


def blend(
    A_VZ,
    A_af,
    A_fS,
    candidates,
    top_k: int = 8,
    tau: float = 0.05,
    vertex_chunk: int = 4096,
    *,
    surface_faces=None,
    return_indices: bool = False,
) -> BlendResult:
    """Sharp blend of the chain ``S = A_VZ · A_af · A_fS`` (docs/architecture.md 5.5).

    A_VZ (Nv, N), A_af (N, N), A_fS (N, Nc), candidates (Nc, 3). The product is formed per chunk
    of ``vertex_chunk`` vertices, left to right (chunk x N, then chunk x Nc), so neither the
    Nv x Nc nor the N x Nc product is ever held whole. ``surface_faces`` (F, 3), indices into
    ``candidates``, projects each position onto that triangle surface (see ``project_to_surface``).
    """
    A_VZ, A_af, A_fS = (torch.as_tensor(a) for a in (A_VZ, A_af, A_fS))
    candidates = torch.as_tensor(candidates, device=A_fS.device)
    _check_chain_shapes(A_VZ, A_af, A_fS, candidates)
    parts = [
        _blend_rows((chunk @ A_af) @ A_fS, candidates, top_k, tau) for chunk in torch.split(A_VZ, vertex_chunk, dim=0)
    ]
    return _finish(parts, candidates, surface_faces, return_indices)


def blend_scores(
    scores,
    candidates,
    top_k: int = 8,
    tau: float = 0.05,
    vertex_chunk: int = 4096,
    *,
    surface_faces=None,
    return_indices: bool = False,
) -> BlendResult:
    """The same sharp blend over precomputed non-negative scores (Nv, Nc), e.g. an oracle chain."""
    scores = torch.as_tensor(scores)
    candidates = torch.as_tensor(candidates, device=scores.device)
    if scores.ndim != 2 or scores.shape[1] != candidates.shape[0]:
        raise ValueError(f"scores {tuple(scores.shape)} do not match candidates {tuple(candidates.shape)}")
    parts = [_blend_rows(chunk, candidates, top_k, tau) for chunk in torch.split(scores, vertex_chunk, dim=0)]
    return _finish(parts, candidates, surface_faces, return_indices)


def _check_chain_shapes(A_VZ, A_af, A_fS, candidates) -> None:
    n = A_af.shape[0]
    ok = A_VZ.shape[1] == n and A_af.shape == (n, n) and A_fS.shape[0] == n
    if not ok or A_fS.shape[1] != candidates.shape[0] or candidates.shape[-1] != 3:
        raise ValueError(
            f"chain shapes do not compose: A_VZ {tuple(A_VZ.shape)}, A_af {tuple(A_af.shape)}, "
            f"A_fS {tuple(A_fS.shape)}, candidates {tuple(candidates.shape)}"
        )


def _blend_rows(S: torch.Tensor, candidates: torch.Tensor, top_k: int, tau: float):
    """Top-k of each score row, softmax with temperature ``tau`` x row maximum, weighted mean."""
    k = min(top_k, S.shape[1])
    top, idx = S.topk(k, dim=1)
    row_max = top[:, :1].clamp_min(_EPS)
    weights = torch.softmax((top - row_max) / (tau * row_max).clamp_min(_EPS), dim=1)  # tau 0: argmax
    positions = torch.einsum("vk,vkc->vc", weights.to(candidates.dtype), candidates[idx])
    confidence = (top.sum(dim=1) / S.sum(dim=1).clamp_min(_EPS)).clamp(0.0, 1.0)
    return positions, confidence, idx, weights


def _finish(parts, candidates, surface_faces, return_indices) -> BlendResult:
    positions, confidence, idx, weights = (torch.cat(p, dim=0) for p in zip(*parts))
    if surface_faces is not None:
        positions = project_to_surface(positions, idx, candidates, torch.as_tensor(surface_faces))
    if not return_indices:
        idx = weights = None
    return BlendResult(positions, confidence, idx, weights)


def project_to_surface(points, near_ids, vertices, faces) -> torch.Tensor:
    """Closest point on the triangles around each point's nearest listed vertex.

    ``near_ids`` (P, k) are vertex indices near each point (the blend's top-k candidates); the
    nearest of them is taken and the point is projected onto the closest of its incident faces.
    Local by design: the blend already lands next to the right piece of surface, so no global
    search structure is needed.
    """
    near = torch.gather(near_ids, 1, (vertices[near_ids] - points[:, None]).norm(dim=2).argmin(1, keepdim=True))[:, 0]
    ring = _vertex_faces(faces.to(near.device), vertices.shape[0])[near]  # (P, D), -1 padded
    tri = vertices[faces.to(near.device)[ring.clamp_min(0)]]  # (P, D, 3, 3)
    closest = closest_point_on_triangles(points[:, None].expand(-1, ring.shape[1], -1), tri)
    dist = (closest - points[:, None]).norm(dim=2).masked_fill(ring < 0, float("inf"))
    best = dist.argmin(dim=1)
    has_face = (ring >= 0).any(dim=1)
    projected = closest[torch.arange(points.shape[0], device=points.device), best]
    return torch.where(has_face[:, None], projected, points)


def _vertex_faces(faces: torch.Tensor, n_vertices: int) -> torch.Tensor:
    """(n_vertices, max valence) face indices incident to each vertex, padded with -1."""
    flat = faces.reshape(-1).long()
    face_of = torch.arange(faces.shape[0], device=faces.device).repeat_interleave(3)
    order = torch.argsort(flat, stable=True)
    flat, face_of = flat[order], face_of[order]
    counts = torch.bincount(flat, minlength=n_vertices)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(flat.shape[0], device=faces.device) - starts[flat]
    table = torch.full(
        (n_vertices, int(counts.max().item()) if flat.numel() else 1), -1, dtype=torch.long, device=faces.device
    )
    table[flat, slot] = face_of
    return table


def closest_point_on_triangles(p: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Closest point to each ``p`` (..., 3) on triangle ``tri`` (..., 3, 3), by Voronoi regions."""
    a, b, c = tri.unbind(dim=-2)
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    bp, cp = p - b, p - c
    d3, d4 = _dot(ab, bp), _dot(ac, bp)
    d5, d6 = _dot(ab, cp), _dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denom = (va + vb + vc).clamp_min(_EPS)
    # interior by default, then each edge and vertex region overrides where it applies
    out = a + ab * (vb / denom)[..., None] + ac * (vc / denom)[..., None]
    bc_t = ((d4 - d3) / ((d4 - d3) + (d5 - d6)).clamp_min(_EPS)).clamp(0, 1)
    out = _where((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), b + (c - b) * bc_t[..., None], out)
    ac_t = (d2 / (d2 - d6).clamp_min(_EPS)).clamp(0, 1)
    out = _where((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + ac * ac_t[..., None], out)
    ab_t = (d1 / (d1 - d3).clamp_min(_EPS)).clamp(0, 1)
    out = _where((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + ab * ab_t[..., None], out)
    out = _where((d6 >= 0) & (d5 <= d6), c, out)
    out = _where((d3 >= 0) & (d4 <= d3), b, out)
    return _where((d1 <= 0) & (d2 <= 0), a, out)


def _dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (u * v).sum(dim=-1)


def _where(mask: torch.Tensor, value: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    return torch.where(mask[..., None], value, other)
