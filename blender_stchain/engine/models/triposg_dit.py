"""TripoSG flow transformer (stage 0): ``transformer/`` of VAST-AI/TripoSG."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .configs import architecture
from .layers import TRIPOSG_NAMES, Block, BlockNames, TimestepEmbedding, run_unet_blocks, time_sinusoid
from .shapes import FlowDims, triposg_dit_dims


class FlowTransformer(nn.Module):
    """Time token + U-Net-skipped blocks with RMS qk-norm self/cross attention (shared with ActionMesh).

    Every size comes from ``FlowDims`` (``shapes.py``), derived from the checkpoint's config.json.
    """

    names: BlockNames = TRIPOSG_NAMES

    def __init__(self, dims: FlowDims):
        super().__init__()
        self.dims = dims
        self.width = dims.width
        self.time_proj = TimestepEmbedding(dims.width, dims.time_hidden)
        self.proj_in = nn.Linear(dims.in_channels, dims.width)
        self.blocks = nn.ModuleList(
            Block(dims.width, dims.heads, self.names, cross_dim=dims.cross_dim, qk_norm=True,
                  skip=dims.has_skip(i), ff_inner=dims.ff_inner, cross2_dim=dims.cross2_dim)
            for i in range(dims.layers))
        self.norm_out = nn.LayerNorm(dims.width)
        self.proj_out = nn.Linear(dims.width, dims.in_channels)

    def time_token(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(B,) raw 0..1000 times -> (B, 1, W); the sinusoid stays fp32 (an fp32 island)."""
        return self.time_proj(time_sinusoid(t, self.width).to(dtype))[:, None]

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """``norm_out``, drop the time token, ``proj_out``."""
        return self.proj_out(self.norm_out(h)[:, 1:])


class TripoSGDiT(FlowTransformer):
    """``sample = dit(hidden_states (B,N,C), timestep (B,), encoder_hidden_states (B,S,D))``."""

    ARCH = {"width", "num_attention_heads", "num_layers", "in_channels", "cross_attention_dim",
            "use_cross_attention_2", "cross_attention_2_dim"}

    @classmethod
    def from_config(cls, cfg: dict) -> "TripoSGDiT":
        return cls(triposg_dit_dims(architecture(cfg, cls.ARCH, "TripoSG transformer")))

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_hidden_states_2: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``encoder_hidden_states_2`` feeds the second cross-attention of ``use_cross_attention_2`` models."""
        if (encoder_hidden_states_2 is None) != (self.dims.cross2_dim is None):
            raise ValueError("TripoSG transformer: pass encoder_hidden_states_2 exactly when the config has "
                             "use_cross_attention_2")
        h = self.proj_in(hidden_states)
        h = torch.cat([self.time_token(timestep, h.dtype), h], dim=1)
        h = run_unet_blocks(self.blocks, h, lambda i, blk, x, skip: blk(x, encoder_hidden_states, skip,
                                                                         context2=encoder_hidden_states_2))
        return self.head(h)
