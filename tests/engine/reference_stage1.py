"""The reference's autoregressive stage-I loop over a whole clip (its ``chunk_from`` windows), built on the
engine's ``denoise_window``: the parity tests check the engine's window step against the reference's loop.
The pipeline itself runs one chained window at a time and never needs this."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from blender_stchain.engine.backbone.sampling import (
    CancelFn,
    ProgressFn,
    StepHook,
    WindowResult,
    denoise_window,
    window_noise,
)


def _windows_right(start: int, end: int, size: int, slide: int) -> list[list[int]]:
    """Windows over [start, end) growing rightwards: each ends ``slide`` after the previous, clamped."""
    out, stop = [], start
    while stop < end:
        stop = min(start + size, end) if not out else min(stop + slide, end)
        out.append(list(range(max(start, stop - size), stop)))
    return out


def _windows_left(start: int, end: int, size: int, slide: int) -> list[list[int]]:
    return [w[::-1] for w in reversed(_windows_right(start, end, size, slide))]


def ar_windows(anchor: int, total: int, size: int, slide: int) -> list[list[int]]:
    """Frame indices of the autoregressive windows (reference ``chunk_from`` semantics).

    One window with the anchor first when the clip is exactly one window long; otherwise windows grow
    away from the anchor, the longer side first; left-going windows list frames in descending order.
    """
    if not (0 < slide <= size and 0 <= anchor < total):
        raise ValueError(f"invalid windows: anchor {anchor}, total {total}, size {size}, slide {slide}")
    if total == size:
        return [[anchor] + [i for i in range(total) if i != anchor]]
    if anchor == 0:
        return _windows_right(0, total, size, slide)
    if anchor == total - 1:
        return _windows_left(0, total, size, slide)
    overlap = size - slide
    if anchor > total - anchor:  # more frames on the left
        right_start = min(max(0, anchor - overlap + 1), total - size)
        return _windows_left(0, anchor + 1, size, slide) + _windows_right(right_start, total, size, slide)
    left_end = max(min(anchor + overlap, total), size)
    return _windows_right(anchor, total, size, slide) + _windows_left(0, left_end, size, slide)


@dataclass
class Stage1Result:
    latents: torch.Tensor  # (F, N, C) all frames, in frame order
    windows: list[list[int]]
    window_results: list[WindowResult]


@torch.no_grad()
def sample_stage1(model, context: torch.Tensor, frame_timesteps: torch.Tensor, anchor_latent: torch.Tensor,
                  anchor: int, steps: int, window_size: int, slide: int, seed: int = 44,
                  guidance: float | None = 7.5, shift: float = 3.0,
                  noises: Sequence[torch.Tensor] | None = None, on_step: ProgressFn | None = None,
                  cancel: CancelFn | None = None, step_hook: StepHook | None = None,
                  trace: bool = False) -> Stage1Result:
    """Stage I over a clip of F frames in AR windows; the anchor latent (N, C) is clamped as known.

    Each window's frames join the bank afterwards; frames already in the bank are kept, so later windows
    condition on them. ``noises[k]`` (T_k, N, C) overrides window k's draw (else ``window_noise`` with
    ``seed + k``).
    """
    frames = context.shape[0]
    windows = ar_windows(anchor, frames, window_size, slide)
    bank: dict[int, torch.Tensor] = {anchor: anchor_latent.reshape(anchor_latent.shape[-2:]).float().cpu()}
    n_tok, ch = bank[anchor].shape
    results = []

    def tick(k):
        return None if on_step is None else lambda done, n: on_step(k * steps + done, len(windows) * steps)

    for k, idx in enumerate(windows):
        noise = noises[k] if noises is not None else window_noise(len(idx), n_tok, ch, seed + k)
        known = torch.tensor([i in bank for i in idx])
        init = torch.stack([bank[i] if i in bank else noise[j].float().cpu() for j, i in enumerate(idx)])
        res = denoise_window(model, context[idx], frame_timesteps[idx], known, init, steps, guidance, shift,
                             window=k, on_step=tick(k), cancel=cancel, step_hook=step_hook, trace=trace)
        for j, i in enumerate(idx):
            bank.setdefault(i, res.latents[j].cpu())
        results.append(res)
    return Stage1Result(torch.stack([bank[i] for i in range(frames)]), windows, results)
