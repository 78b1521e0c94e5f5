"""One window of the attention chain (docs/architecture.md 5.2-5.5): known frame -> every frame of the window.

Inputs are the window's image tokens, the clamped known latent (the anchor's, or the boundary
frame's for later windows) and the tracked landmarks on the known frame. A truncated stage-I run
captures the known frame's token->token attention and predicts each frame's clean latent; the VAE
decoder's cross-attention ties points to tokens; the sharp blend lands each landmark on the
frame's own surface. The same maps give each landmark's image position for the camera (docs/architecture.md 6).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..backbone.facade import query_bucket
from ..device import geometry_device
from ..estimate import PRIOR_BAND, surface_queries
from ..geometry import surface
from .blend import blend, token_to_surface
from .correspond import patch_distribution, peak_position


FRAMES_PER_BATCH = 16  # candidate surfaces decoded together (full size: keys and values ~16 MB per frame)
EXTRACTION_SHARE = 0.9  # a chained frame's time spent on its candidate surface (~50k queries vs a few k for
# its attention map at default settings; it shapes the progress bar only)
ON_PRIOR = 0.9  # share of the extraction shown done when the prior's query count has been asked


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
    total)`` is called after each step, each batched decoder call and each frame (it may raise
    Cancelled); ``total`` is K steps + T frames, and the frames' reports are fractions of that span
    until its end (see ``_FrameProgress``).
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
    positions[known_index], confidence[known_index] = known_points, 1.0
    others = [f for f in range(T) if f != known_index]
    ticks = _FrameProgress(progress, K, T, len(others), settings)
    for g in range(0, len(others), FRAMES_PER_BATCH):
        frames = others[g : g + FRAMES_PER_BATCH]
        for f, (p, c) in zip(frames, _chain_frames(backbone, A_VZ, run, frames, known_points, settings, ticks)):
            positions[f], confidence[f] = p, c
    if progress is not None:
        progress(total, total)
    xy, xy_conf, xy_sigma = image_positions(backbone, A_VZ, run)
    return WindowTracks(positions, confidence, xy, xy_conf, run.x0, image_sigma=xy_sigma)


def _chain_frames(backbone, A_VZ, run, frames: list[int], fallback, settings, ticks):
    """Candidates of ``frames`` on their own surfaces, decoded together (one kv call, batched SDF
    queries); then per frame its token->surface map and the sharp blend. Yields (positions, confidence)."""
    decoders = backbone.decoders(run.x0[frames])
    ticks.batch(len(frames))
    candidates = surface.extract_many(decoders.sdf_many, len(frames), resolution=settings.candidate_resolution,
                                      coarse_resolution=settings.candidate_coarse_resolution,
                                      device=geometry_device(backbone.device),
                                      chunk=decoders.call_queries(settings.decode_chunk),
                                      pad=query_bucket, on_call=ticks.queries, as_tensors=True)
    for i, (f, cand) in enumerate(zip(frames, candidates)):
        yield _blend_frame(decoders.frame(i), A_VZ, run.token_attention[f], cand, fallback, settings)
        ticks.frame()


def _blend_frame(decoder, A_VZ, A_af, cand, fallback, settings):
    """Frame f's candidates (its surface's vertices, a tensor): token->surface map, sharp blend."""
    X = cand[0].to(A_VZ.device, torch.float32)
    if X.shape[0] == 0:  # no surface predicted on this frame: keep the points, with no confidence
        return fallback, torch.zeros(fallback.shape[0], device=fallback.device)
    A_fS = token_to_surface(decoder.attention(X, settings.attention_chunk))
    res = blend(A_VZ, A_af, A_fS, X, top_k=settings.top_k, tau=settings.tau, vertex_chunk=settings.vertex_chunk)
    return res.positions, res.confidence


class _FrameProgress:
    """A window's frame reports: positions from K (the steps done) to K + T, strictly increasing.

    The frames' work is batched, so no frame finishes on its own: each report is a fraction of the
    frames' span (a frame unit: its share of its batch's extraction, ``EXTRACTION_SHARE``, then its
    attention and blend), and only the last one is whole. The time estimate measures the whole span
    as the window's frames (``contracts.progress``), so these fractions shape the bar, not the pace.
    """

    def __init__(self, progress, steps: int, frames: int, chained: int, settings):
        self.progress, self.steps, self.frames, self.chained = progress, steps, frames, chained
        self.expected = surface_queries(settings.candidate_resolution, settings.candidate_coarse_resolution,
                                        PRIOR_BAND)  # one surface's queries, the prior's
        self.base, self.size, self.asked, self.blended = 0, 0, 0, 0

    def batch(self, size: int) -> None:
        """A batch of ``size`` frames starts (the previous one's frames are all done)."""
        self.base, self.size, self.asked, self.blended = self.base + self.size, size, 0, 0

    def queries(self, count: int) -> None:
        """After a batched decoder call: the extraction's share done, approaching its end."""
        self.asked += count
        x = self.asked / (self.expected * self.size)
        share = ON_PRIOR * x if x <= 1 else 1 - (1 - ON_PRIOR) / x  # in step with the prior's count, < 1 past it
        self._report(self.base + self.size * EXTRACTION_SHARE * share)

    def frame(self) -> None:
        """After a frame's attention and blend."""
        self.blended += 1
        self._report(self.base + self.size * EXTRACTION_SHARE + self.blended * (1 - EXTRACTION_SHARE))

    def _report(self, units: float) -> None:
        if self.progress is not None and units < self.chained - 1e-9:  # the end is reported whole
            self.progress(self.steps + self.frames * units / self.chained, self.steps + self.frames)
