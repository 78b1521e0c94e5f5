"""2D-3D correspondences for the camera (DESIGN 5).

A tracked point's token distribution at frame f, pushed through the denoiser's image
cross-attention, gives a distribution over DINOv2 patches; its soft-argmax is the point's position
in the model image and its peakedness the confidence. The crop map then takes it to footage pixels.
"""

from __future__ import annotations

import math

import torch


def patch_distribution(token_weights: torch.Tensor, image_attention: torch.Tensor, prefix: int = 1) -> torch.Tensor:
    """(L, N) token weights x (N, S) token->image attention -> (L, P) over patches (CLS dropped).

    ``prefix`` leading image tokens (CLS, registers) carry no position and are excluded before
    renormalising.
    """
    probs = token_weights @ image_attention[:, prefix:]
    return probs / probs.sum(-1, keepdim=True).clamp_min(1e-12)


def soft_argmax(probs: torch.Tensor, grid: int, image_px: float, sharpen: float = 4.0):
    """(L, grid*grid) patch probabilities -> model-image xy (L, 2) in pixels and confidence (L,).

    The distribution is sharpened (power ``sharpen``) around its mode so a diffuse tail does not
    drag the estimate toward the image centre. Pixel convention: (0, 0) is the top-left corner of
    the model image, a patch centre sits at ((i + 0.5) * cell). Confidence is 1 - normalised
    entropy of the sharpened distribution: 1 for a single patch, 0 for a uniform map.
    """
    L, P = probs.shape
    if P != grid * grid:
        raise ValueError(f"expected {grid * grid} patches, got {P}")
    p = probs.clamp_min(0) ** sharpen
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-30)
    cell = image_px / grid
    centres = (torch.arange(grid, dtype=p.dtype, device=p.device) + 0.5) * cell
    gy, gx = torch.meshgrid(centres, centres, indexing="ij")
    xy = torch.stack([p @ gx.reshape(-1), p @ gy.reshape(-1)], dim=-1)
    entropy = -(p * p.clamp_min(1e-30).log()).sum(-1)
    confidence = 1.0 - entropy / math.log(P)
    return xy, confidence.clamp(0.0, 1.0)
