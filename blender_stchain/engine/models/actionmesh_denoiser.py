"""ActionMesh temporal denoiser (stage I): ``denoiser/`` of facebook/ActionMesh.

The TripoSG DiT with ActionMesh block names, a time token per frame (known frames at t = 0), and
"inflated" self-attention: all frames of a window attend jointly, with RoPE on the frame index.
"""

from __future__ import annotations

import torch

from ...contracts.errors import WeightsError
from .configs import architecture
from .layers import ACTIONMESH_NAMES, Attention, rope_tables, run_unet_blocks
from .shapes import FlowDims, denoiser_dims
from .triposg_dit import FlowTransformer


class ActionMeshDenoiser(FlowTransformer):
    names = ACTIONMESH_NAMES
    ARCH = {"width", "num_attention_heads", "num_layers", "in_channels", "cross_attention_dim", "mlp_ratio",
            "inflated_layers"}

    def __init__(self, dims: FlowDims, inflated_layers=None):
        super().__init__(dims)
        self.heads = dims.heads
        self.inflated = set(range(len(self.blocks)) if inflated_layers is None else inflated_layers)

    @classmethod
    def from_config(cls, cfg: dict) -> "ActionMeshDenoiser":
        """``inflated_layers`` defaults to all layers only when absent (the reference's default is 0..20)."""
        kw = architecture(cfg, cls.ARCH, "ActionMesh denoiser")
        if kw["width"] // kw["num_attention_heads"] % 2:
            raise WeightsError("ActionMesh denoiser config: width / num_attention_heads must be even (RoPE)")
        return cls(denoiser_dims(kw), kw.get("inflated_layers", range(21)))

    def frame_times(self, diffusion_time: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B*T,) per-frame times, frame-major; known frames (mask 1) get t = 0.

        The reference tiles the batch (``repeat``), which is only right when all elements share t
        (as its sampler always does); each element's own t is used here.
        """
        b, t = mask.shape
        return diffusion_time.repeat_interleave(t) * (1 - mask.reshape(b * t))

    def rope(self, framestep: torch.Tensor, tokens_per_frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token RoPE tables (B*T, N+1, head_dim): window-relative frame index, same for all tokens."""
        pos = framestep - framestep.min(dim=1, keepdim=True).values
        cos, sin = rope_tables(pos.reshape(-1), self.dims.head_dim)
        return tuple(x[:, None].expand(-1, tokens_per_frame, -1) for x in (cos, sin))

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor, framestep: torch.Tensor,
                diffusion_time: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """hidden_states (B,T,N,C), context (B,T,S,D), framestep (B,T), diffusion_time (B,), mask (B,T)
        -> velocity (B,T,N,C)."""
        b, t, n, c = hidden_states.shape
        h = self.proj_in(hidden_states.reshape(b * t, n, c))
        h = torch.cat([self.time_token(self.frame_times(diffusion_time, mask), h.dtype), h], dim=1)
        rope = self.rope(framestep, n + 1)
        ctx = context.reshape(b * t, *context.shape[2:])

        def inflated(attn: Attention, x: torch.Tensor, rope_bt) -> torch.Tensor:
            flat = tuple(r.reshape(b, t * (n + 1), -1) for r in rope_bt)
            return attn(x.reshape(b, t * (n + 1), -1), rope=flat).reshape(b * t, n + 1, -1)

        def step(i, blk, x, skip):
            return blk(x, ctx, skip, rope=rope, attend=inflated if i in self.inflated else None)

        h = run_unet_blocks(self.blocks, h, step)
        return self.head(h).reshape(b, t, n, c)
