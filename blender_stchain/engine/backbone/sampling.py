"""Flow-matching samplers: stage 0 (TripoSG anchor) and stage I (ActionMesh windows).

Both follow the reference arithmetic exactly (schedules bit-exact in float32), so the fixtures reproduce:

- Stage 0 (rectified flow, shift 1): sigma_i = shift*s/(1+(shift-1)*s) with s = 1 - i/S, t_i = 1000*sigma_i,
  sigma_S = 0; CFG batch [uncond = zeros, cond]; ``x <- x + (sigma_i - sigma_{i+1}) * v`` (the model predicts
  v ~ x0 - eps, so the update adds it).
- Stage I (shift 3 applied twice, S evaluations ending at t ~ 8.93, not 0); CFG batch [image context zeroed,
  full] with the known-frame mask kept in both; ``v0 + g*(v1 - v0)``; only unknown frames are updated, so
  known frames stay bit-identical; per-window noise from a CPU generator seeded ``seed + window`` drawing a
  discarded "same noise" first (the reference ``get_noise`` order). The pipeline runs one window at a time
  (``denoise_window``); the reference's autoregressive loop over a whole clip lives with the parity tests.

Both loops take injected noise (or draw it from a seeded CPU generator, identical on every device), an
``on_step(done, total)`` progress callback (steps of this loop), a ``cancel()`` check between steps raising ``Cancelled``, a
``steps`` count (the chain's truncated K-step schedule is the same schedule with S = K) and a
``step_hook(window, step)`` returning a context manager the model call runs in (attention capture).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ...contracts.errors import Cancelled

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]
StepHook = Callable[[int, int], contextlib.AbstractContextManager]


# --------------------------------------------------------------------------- schedules

def _shift(sigma, shift: float):
    return shift * sigma / (1 + (shift - 1) * sigma)


def triposg_schedule(steps: int, shift: float = 1.0, num_train_timesteps: int = 1000):
    """Stage-0 schedule: (timesteps (S,) fed to the model, sigmas (S+1,) ending at 0), float32."""
    s = 1.0 - np.arange(steps, dtype=np.float64) / steps
    sigmas = torch.from_numpy(_shift(s, shift).astype(np.float32))
    timesteps = sigmas * num_train_timesteps
    return timesteps, torch.cat([sigmas, sigmas.new_zeros(1)])


def actionmesh_schedule(steps: int, shift: float = 3.0, num_train_timesteps: int = 1000):
    """Stage-I schedule: (timesteps (S+1,), distances (S,)), float32; the model runs at timesteps[:-1].

    sigma_min is the shifted smallest training sigma; the linear grid between the shifted extremes is
    shifted a second time (the reference does exactly this).
    """
    n = num_train_timesteps
    sigma_max, sigma_min = _shift(1.0, shift), _shift(1.0 / n, shift)
    grid = np.linspace(sigma_max * n, sigma_min * n, steps + 1)
    timesteps = torch.from_numpy((_shift(grid / n, shift) * n).astype(np.float32))
    return timesteps, (timesteps[:-1] - timesteps[1:]) / n


# --------------------------------------------------------------------------- loop helpers

@dataclass
class Trace:
    """Per-step record for debugging and parity checks (only filled when asked for)."""

    model_t: list = field(default_factory=list)
    model_out: list = field(default_factory=list)
    velocity: list = field(default_factory=list)
    latents: list = field(default_factory=list)


def _check_cancel(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def _hook(step_hook: StepHook | None, window: int, step: int):
    return step_hook(window, step) if step_hook is not None else contextlib.nullcontext()


def _batched(x: torch.Tensor, guidance: float | None) -> torch.Tensor:
    """The model's input batch: [x] alone, or [x, x] for the [uncond, cond] pair of classifier-free guidance."""
    return x if guidance is None else torch.cat([x, x])


def _guided(out: torch.Tensor, guidance: float | None) -> torch.Tensor:
    """The velocity: the conditional output alone, or ``uncond + g * (cond - uncond)``."""
    return out if guidance is None else out[:1] + guidance * (out[1:] - out[:1])


def _device_of(model) -> torch.device:
    p = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return p.device if p is not None else torch.device("cpu")


# --------------------------------------------------------------------------- stage 0

@dataclass
class Stage0Result:
    latents: torch.Tensor  # (1, N, C) final latents (sigma = 0)
    trace: Trace | None = None


def stage0_noise(num_tokens: int, channels: int, seed: int) -> torch.Tensor:
    """The reference's initial stage-0 latent, drawn on CPU so it is the same on every device."""
    return torch.randn((1, num_tokens, channels), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample_stage0(model, cond: torch.Tensor, noise: torch.Tensor, steps: int, guidance: float | None = 7.5,
                  shift: float = 1.0, on_step: ProgressFn | None = None, cancel: CancelFn | None = None,
                  step_hook: StepHook | None = None, trace: bool = False) -> Stage0Result:
    """TripoSG rectified-flow loop. ``model(x, t, cond) -> v`` (the DiT forward), ``cond`` (1, S, D).

    ``guidance=None`` runs the conditional branch only (batch 1).
    """
    device = _device_of(model)
    timesteps, sigmas = triposg_schedule(steps, shift)
    x = noise.to(device=device, dtype=torch.float32).clone()
    cond = cond.to(device=device, dtype=torch.float32)
    ctx = cond if guidance is None else torch.cat([torch.zeros_like(cond), cond])
    rec = Trace() if trace else None
    for i in range(steps):
        _check_cancel(cancel)
        xin = _batched(x, guidance)
        t = timesteps[i].to(device).expand(xin.shape[0])
        with _hook(step_hook, 0, i):
            out = model(xin, t, ctx)
        v = _guided(out, guidance)
        x = x + (sigmas[i] - sigmas[i + 1]).to(device) * v
        if rec is not None:
            rec.model_t.append(t.cpu()), rec.model_out.append(out.cpu())
            rec.velocity.append(v.cpu()), rec.latents.append(x.cpu())
        if on_step is not None:
            on_step(i + 1, steps)
    return Stage0Result(x, rec)


# --------------------------------------------------------------------------- stage I

@dataclass
class WindowResult:
    latents: torch.Tensor  # (T, N, C) after the last step; known frames untouched
    x0: torch.Tensor  # (T, N, C) predicted clean latents from the last model evaluation
    trace: Trace | None = None


def window_noise(frames: int, num_tokens: int, channels: int, seed: int) -> torch.Tensor:
    """Reference ``get_noise`` order on a CPU generator: a discarded (1,1,N,C) draw, then (1,T,N,C)."""
    g = torch.Generator().manual_seed(seed)
    torch.randn((1, 1, num_tokens, channels), generator=g)  # "same noise", weight sqrt(0): RNG order only
    return torch.randn((1, frames, num_tokens, channels), generator=g)[0]


@torch.no_grad()
def denoise_window(model, context: torch.Tensor, framestep: torch.Tensor, known: torch.Tensor,
                   init: torch.Tensor, steps: int, guidance: float | None = 7.5, shift: float = 3.0,
                   window: int = 0, on_step: ProgressFn | None = None, cancel: CancelFn | None = None,
                   step_hook: StepHook | None = None, trace: bool = False) -> WindowResult:
    """One stage-I window. ``init`` (T, N, C) holds the known latents where ``known`` (T,) is true and noise
    elsewhere; ``context`` (T, S, D); ``framestep`` (T,) video timesteps. The model is called as
    ``model(hidden_states=(B,T,N,C), context=(B,T,S,D), framestep=(B,T), diffusion_time=(B,), mask=(B,T))``.
    """
    device = _device_of(model)
    timesteps, distances = actionmesh_schedule(steps, shift)
    x = init.to(device=device, dtype=torch.float32).clone()[None]
    ctx = context.to(device=device, dtype=torch.float32)[None]
    fs = framestep.to(device=device, dtype=torch.float32)[None]
    mask = known.to(device=device, dtype=torch.float32)[None]
    unknown = mask == 0
    if guidance is not None:
        ctx, fs, mask = torch.cat([torch.zeros_like(ctx), ctx]), torch.cat([fs, fs]), torch.cat([mask, mask])
    rec = Trace() if trace else None
    v = None
    for i in range(steps):
        _check_cancel(cancel)
        xin = _batched(x, guidance)
        t = timesteps[i].to(device).expand(xin.shape[0])
        with _hook(step_hook, window, i):
            out = model(hidden_states=xin, context=ctx, framestep=fs, diffusion_time=t, mask=mask)
        v = _guided(out, guidance)
        x = torch.where(unknown[..., None, None], x + distances[i].to(device) * v, x)  # no host sync
        if rec is not None:
            rec.model_t.append(t.cpu()), rec.model_out.append(out.cpu())
            rec.velocity.append(v.cpu()), rec.latents.append(x.cpu().clone())
        if on_step is not None:
            on_step(i + 1, steps)
    # x0 = x_before + sigma_i v = x_after + sigma_{i+1} v (the schedule ends at sigma ~ 0.0089, not 0)
    sigma_end = timesteps[steps].to(device) / 1000.0
    x0 = x[0] if v is None else torch.where(unknown[0, :, None, None], x[0] + sigma_end * v[0], x[0])
    return WindowResult(x[0], x0, rec)
