"""TripoSG flow transformer (stage 0): ``transformer/`` of VAST-AI/TripoSG."""

from __future__ import annotations

import torch
from torch import nn

from .configs import architecture
from .layers import TRIPOSG_NAMES, Block, BlockNames, TimestepEmbedding, run_unet_blocks, time_sinusoid


class FlowTransformer(nn.Module):
    """Time token + U-Net-skipped blocks with RMS qk-norm self/cross attention (shared with ActionMesh)."""

    names: BlockNames = TRIPOSG_NAMES

    def __init__(self, width: int, num_attention_heads: int, num_layers: int, in_channels: int,
                 cross_attention_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.width = width
        self.time_proj = TimestepEmbedding(width, int(width * mlp_ratio))
        self.proj_in = nn.Linear(in_channels, width)
        self.blocks = nn.ModuleList(
            Block(width, num_attention_heads, self.names, cross_dim=cross_attention_dim, qk_norm=True,
                  skip=i > num_layers // 2, mlp_ratio=mlp_ratio)
            for i in range(num_layers))
        self.norm_out = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, in_channels)

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
        kw = architecture(cfg, cls.ARCH, "TripoSG transformer")
        if kw.pop("use_cross_attention_2", False):
            raise NotImplementedError("TripoSG transformer: use_cross_attention_2=True is not supported")
        kw.pop("cross_attention_2_dim", None)
        return cls(**kw)

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        h = self.proj_in(hidden_states)
        h = torch.cat([self.time_token(timestep, h.dtype), h], dim=1)
        h = run_unet_blocks(self.blocks, h, lambda i, blk, x, skip: blk(x, encoder_hidden_states, skip))
        return self.head(h)
