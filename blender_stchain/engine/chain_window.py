"""One window of the attention chain (DESIGN 4.2-4.5): known frame -> every frame of the window.

Inputs are the window's image tokens, the clamped known latent (the anchor's, or the boundary
frame's for later windows) and the tracked points on the known frame. A truncated stage-I run
captures the known frame's token->token attention and predicts each frame's clean latent; the
VAE decoder's cross-attention ties points to tokens; the sharp blend lands each point on the
frame's own surface. The same pass yields each point's token weights for the camera (DESIGN 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import chain, surface
from .correspond import patch_distribution, soft_argmax


@dataclass
class WindowTracks:
    positions: torch.Tensor  # (T, L, 3) object space
    confidence: torch.Tensor  # (T, L) in [0, 1]
    image_xy: torch.Tensor  # (T, L, 2) model-image pixels (DINOv2 input)
    image_confidence: torch.Tensor  # (T, L)
    latents: torch.Tensor  # (T, N, C) predicted clean latents (known frame: its clamped latent)


def track_window(backbone, context, known_index: int, known_latent, known_points, settings, progress=None) -> WindowTracks:
    """Chain ``known_points`` (L, 3) on frame ``known_index`` to every frame of the window.

    ``context`` (T, S, D) image tokens of the window; ``known_latent`` (N, C).
    ``progress(done, total)`` is called between the steps and per frame (it may raise Cancelled).
    """
    T = context.shape[0]
    run = backbone.truncated_stage1(context, known_index, known_latent, settings, progress)
    A_VZ = backbone.decoder_attention(known_latent, known_points)  # (L, N)
    grid = backbone.patch_grid
    out = _empty(T, known_points, run.x0)
    for f in range(T):
        if f == known_index:
            out.positions[f], out.confidence[f] = known_points, 1.0
        else:
            _chain_frame(backbone, out, f, A_VZ, run.token_attention[f], run.x0[f], settings)
        weights = A_VZ @ run.token_attention[f]
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)
        patches = patch_distribution(weights, run.image_attention[f], prefix=backbone.image_prefix_tokens)
        out.image_xy[f], out.image_confidence[f] = soft_argmax(patches, grid, backbone.image_px)
        if progress is not None:
            progress(settings.chain_steps + f + 1, settings.chain_steps + T)
    return out


def _empty(T, points, x0) -> WindowTracks:
    L = points.shape[0]
    z = dict(dtype=torch.float32, device=points.device)
    return WindowTracks(torch.zeros(T, L, 3, **z), torch.zeros(T, L, **z), torch.zeros(T, L, 2, **z),
                        torch.zeros(T, L, **z), x0)


def _chain_frame(backbone, out: WindowTracks, f: int, A_VZ, A_af, latent, settings) -> None:
    """Candidates on frame f's own surface, token->surface map, sharp blend."""
    cand = surface.extract(backbone.sdf(latent), resolution=settings.candidate_resolution,
                           coarse_resolution=settings.candidate_resolution)
    X = torch.as_tensor(cand.vertices, dtype=torch.float32, device=A_VZ.device)
    if X.shape[0] == 0:  # no surface predicted on this frame: keep the points, no confidence
        out.positions[f], out.confidence[f] = out.positions[f - 1] if f else 0.0, 0.0
        return
    A_fS = chain.token_to_surface(backbone.decoder_attention(latent, X))
    res = chain.blend(A_VZ, A_af, A_fS, X, top_k=settings.top_k, tau=settings.tau, vertex_chunk=settings.vertex_chunk)
    out.positions[f], out.confidence[f] = res.positions, res.confidence
