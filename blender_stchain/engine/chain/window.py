"""One window of the attention chain (DESIGN 4.2-4.5): known frame -> every frame of the window.

Inputs are the window's image tokens, the clamped known latent (the anchor's, or the boundary
frame's for later windows) and the tracked landmarks on the known frame. A truncated stage-I run
captures the known frame's token->token attention and predicts each frame's clean latent; the VAE
decoder's cross-attention ties points to tokens; the sharp blend lands each landmark on the
frame's own surface. The same maps give each landmark's image position for the camera (DESIGN 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..geometry import surface
from .blend import blend, token_to_surface
from .correspond import patch_distribution, peak_position


@dataclass
class WindowTracks:
    positions: torch.Tensor  # (T, L, 3) object space
    confidence: torch.Tensor  # (T, L) in [0, 1]
    image_xy: torch.Tensor  # (T, L, 2) model-image pixels (DINOv2 input)
    image_confidence: torch.Tensor  # (T, L)
    latents: torch.Tensor  # (T, N, C) predicted clean latents (known frame: its clamped latent)
    vertices: torch.Tensor | None = None  # (T, Nv, 3) when the method predicts every vertex (baseline)
    image_sigma: torch.Tensor | None = None  # (T, L) uncertainty of ``image_xy`` in model-image pixels


def image_positions(backbone, A_VZ, run):
    """Landmark token weights per frame -> image patches -> peak: xy (T, L, 2), confidence (T, L) and
    uncertainty (T, L) in model-image pixels."""
    out = []
    for f in range(run.x0.shape[0]):
        w = A_VZ @ run.token_attention[f]
        w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
        patches = patch_distribution(w, run.image_attention[f], prefix=backbone.image_prefix_tokens)
        out.append(peak_position(patches, backbone.patch_grid, backbone.image_px))
    return tuple(torch.stack(v) for v in zip(*out))


def track_window(backbone, context, known_index: int, known_latent, known_points, settings, progress=None,
                 seed: int = 0) -> WindowTracks:
    """Chain ``known_points`` (L, 3) on frame ``known_index`` to every frame of the window.

    ``context`` (T, S, D) image tokens of the window; ``known_latent`` (N, C). ``progress(done,
    total)`` is called after each step and each frame (it may raise Cancelled).
    """
    T, K = context.shape[0], settings.chain_steps
    total = K + T
    run = backbone.stage1(context, known_index, known_latent, K, settings.stage1_guidance, seed,
                          capture_layers=settings.capture_layers,
                          progress=lambda i, n: progress and progress(i, total))
    known_points = known_points.to(backbone.device, torch.float32)
    A_VZ = backbone.decoder_attention(known_latent, known_points, settings.attention_chunk)  # (L, N)
    L = known_points.shape[0]
    positions = known_points.new_zeros(T, L, 3)
    confidence = known_points.new_zeros(T, L)
    for f in range(T):
        if f == known_index:
            positions[f], confidence[f] = known_points, 1.0
        else:
            positions[f], confidence[f] = _chain_frame(backbone, A_VZ, run.token_attention[f], run.x0[f],
                                                       known_points, settings)
        if progress is not None:
            progress(K + f + 1, total)
    xy, xy_conf, xy_sigma = image_positions(backbone, A_VZ, run)
    return WindowTracks(positions, confidence, xy, xy_conf, run.x0, image_sigma=xy_sigma)


def _chain_frame(backbone, A_VZ, A_af, latent, fallback, settings):
    """Candidates on frame f's own surface, token->surface map, sharp blend."""
    decoder = backbone.decoder(latent)  # one kv cache for the surface and the attention map
    cand = surface.extract(decoder.sdf, resolution=settings.candidate_resolution,
                           coarse_resolution=settings.candidate_coarse_resolution, device=backbone.device,
                           chunk=settings.decode_chunk)
    X = torch.as_tensor(cand.vertices, dtype=torch.float32, device=A_VZ.device)
    if X.shape[0] == 0:  # no surface predicted on this frame: keep the points, with no confidence
        return fallback, torch.zeros(fallback.shape[0], device=fallback.device)
    A_fS = token_to_surface(decoder.attention(X, settings.attention_chunk))
    res = blend(A_VZ, A_af, A_fS, X, top_k=settings.top_k, tau=settings.tau, vertex_chunk=settings.vertex_chunk)
    return res.positions, res.confidence
