"""2D-3D correspondences for the camera (docs/architecture.md 6).

A tracked point's token distribution at frame f, pushed through the denoiser's image
cross-attention, gives a distribution over DINOv2 patches; the centroid of its peak is the point's
position in the model image and the mass of the peak its confidence. The crop map then takes it to
footage pixels; the peak's spread gives each match an uncertainty in pixels, so the camera solver's
thresholds follow the matches.
"""

from __future__ import annotations

import torch


def patch_distribution(token_weights: torch.Tensor, image_attention: torch.Tensor, prefix: int = 1) -> torch.Tensor:
    """(L, N) token weights x (N, S) token->image attention -> (L, P) over patches (CLS dropped).

    ``prefix`` leading image tokens (CLS, registers) carry no position and are excluded before
    renormalising.
    """
    probs = token_weights @ image_attention[:, prefix:]
    return probs / probs.sum(-1, keepdim=True).clamp_min(1e-12)


def peak_position(probs: torch.Tensor, grid: int, image_px: float, radius: int = 2):
    """(L, grid*grid) patch probabilities -> model-image xy (L, 2), confidence (L,) and uncertainty
    (L,) in model-image pixels.

    A soft-argmax over the whole map is dragged toward the image centre by the diffuse floor that
    attention always has; here the floor (the map's median) is removed and the centroid is taken in
    a (2 radius + 1)^2 window around the mode, so the estimate follows the peak however much mass
    the floor holds. Confidence is the share of the map's mass that stands above the floor in that
    window (1: all of it in the peak, ~0: a flat map); the uncertainty is the peak's spread plus
    the patch quantisation (cell / sqrt 12). Pixel convention: (0, 0) is the top-left corner, a
    patch centre sits at ((i + 0.5) * cell).
    """
    L, P = probs.shape
    if P != grid * grid:
        raise ValueError(f"expected {grid * grid} patches, got {P}")
    p = probs.clamp_min(0).reshape(L, grid, grid)
    p = p / p.flatten(1).sum(-1).clamp_min(1e-30)[:, None, None]
    floor = p.flatten(1).median(-1).values[:, None, None]
    mode = p.flatten(1).argmax(-1)
    my, mx = mode // grid, mode % grid
    offsets = torch.arange(-radius, radius + 1, device=p.device)
    ys = (my[:, None] + offsets).clamp(0, grid - 1)  # (L, w): rows of the window (edge rows repeat)
    xs = (mx[:, None] + offsets).clamp(0, grid - 1)
    inside_y = (my[:, None] + offsets >= 0) & (my[:, None] + offsets < grid)
    inside_x = (mx[:, None] + offsets >= 0) & (mx[:, None] + offsets < grid)
    win = p[torch.arange(L, device=p.device)[:, None, None], ys[:, :, None], xs[:, None, :]]
    win = (win - floor).clamp_min(0) * (inside_y[:, :, None] & inside_x[:, None, :])
    mass = win.flatten(1).sum(-1)
    cell = image_px / grid
    wy = win.sum(2) / mass.clamp_min(1e-30)[:, None]
    wx = win.sum(1) / mass.clamp_min(1e-30)[:, None]
    cy, cx = (wy * (ys + 0.5)).sum(-1), (wx * (xs + 0.5)).sum(-1)
    var = (wy * (ys + 0.5 - cy[:, None]) ** 2).sum(-1) + (wx * (xs + 0.5 - cx[:, None]) ** 2).sum(-1)
    sigma = cell * torch.sqrt(0.5 * var + 1.0 / 12.0)
    xy = torch.stack([cx, cy], -1) * cell
    return xy, mass.clamp(0.0, 1.0), sigma
