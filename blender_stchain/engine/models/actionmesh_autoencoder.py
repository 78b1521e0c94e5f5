"""ActionMesh temporal autoencoder (stage II, "direct" mode): ``autoencoder/`` of facebook/ActionMesh.

For each target time α it reruns the self-attention stack over all window tokens plus T α tokens,
then lets the anchor vertices cross-attend to the result; the output is the absolute vertex
position ``2·sigmoid(−logit) − 1`` (not a displacement).
"""

from __future__ import annotations

import torch
from torch import nn

from ...contracts.errors import WeightsError
from .configs import architecture
from .layers import ACTIONMESH_NAMES, Block, alpha_sinusoid, autocast_off, fourier_features, rope_tables
from .shapes import AutoencoderDims, autoencoder_dims


class ActionMeshAutoencoder(nn.Module):
    ARCH = {"in_channels", "in_extra_channels", "out_dim", "latent_channels", "width", "num_layers",
            "num_attention_heads", "embed_frequency", "embed_include_pi", "prediction_mode"}

    def __init__(self, dims: AutoencoderDims):
        super().__init__()
        w, heads = dims.width, dims.heads
        self.dims, self.width, self.head_dim = dims, w, dims.head_dim
        self.in_channels, self.freqs, self.include_pi = dims.in_channels, dims.freqs, dims.include_pi
        self.blocks = nn.ModuleList(
            [Block(w, heads, ACTIONMESH_NAMES) for _ in range(dims.layers)]
            + [Block(w, heads, ACTIONMESH_NAMES, self_attn=False, cross_dim=w, norm_cross=True)])
        self.proj_query = nn.Linear(dims.query_dim, w)
        self.norm_out = nn.LayerNorm(w)
        self.proj_out = nn.Linear(w, dims.out_dim)
        self.post_quant = nn.Linear(dims.latent, w)

    @classmethod
    def from_config(cls, cfg: dict) -> "ActionMeshAutoencoder":
        """Valid where the reference runs: 3D positions, α tokens as wide as the stream (width % 4 == 0),
        an even head dim for RoPE."""
        kw = architecture(cfg, cls.ARCH, "ActionMesh autoencoder")
        if kw.get("prediction_mode", "direct") != "direct":
            raise NotImplementedError(f"ActionMesh autoencoder: prediction_mode {kw['prediction_mode']!r} "
                                      "is not supported")
        dims = autoencoder_dims(kw)
        if dims.in_channels != 3 or dims.width % 4 or dims.head_dim % 2:
            raise WeightsError("ActionMesh autoencoder config: needs in_channels 3, width divisible by 4 and "
                               "an even width / num_attention_heads")
        return cls(dims)

    def embed_query(self, query: torch.Tensor) -> torch.Tensor:
        """(B, V, 6) xyz + normal -> (B, V, 54) Fourier(xyz) ++ normal (no normal when in_extra_channels is 0)."""
        embed = fourier_features(query[..., :self.in_channels], self.freqs, self.include_pi)
        if not self.dims.extra_channels:  # the reference then ignores whatever follows xyz
            return embed
        return torch.cat([embed, query[..., self.in_channels:]], dim=-1)

    def alpha_tokens(self, source_alpha: torch.Tensor, target_alphas: torch.Tensor) -> torch.Tensor:
        """(B, K, W): [cos|sin](α_s) ++ [cos|sin](α_k), each W/2 wide; fp32."""
        b, k = target_alphas.shape
        src = alpha_sinusoid(source_alpha, self.width // 2)[:, None].expand(b, k, -1)
        tgt = alpha_sinusoid(target_alphas.reshape(-1), self.width // 2).reshape(b, k, -1)
        return torch.cat([src, tgt], dim=-1)

    def rope(self, framestep: torch.Tensor, tokens_per_frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T·N + T, head_dim): latent tokens frame-major, then one α token per frame."""
        pos = framestep - framestep.min(dim=1, keepdim=True).values
        pos = torch.cat([pos.repeat_interleave(tokens_per_frame, dim=1), pos], dim=1)
        return rope_tables(pos, self.head_dim)

    def kv_cache(self, tokens: torch.Tensor, alpha_token: torch.Tensor, rope) -> torch.Tensor:
        """Self-attention stack over [latent tokens (B, T·N, W), α token repeated per frame]."""
        t = rope[0].shape[1] - tokens.shape[1]
        h = torch.cat([tokens, alpha_token[:, None].expand(-1, t, -1)], dim=1)  # fp32 α tokens promote the stream
        for blk in self.blocks[:-1]:
            h = blk(h, rope=rope)
        return h

    def query_logits(self, kv: torch.Tensor, query_embed: torch.Tensor) -> torch.Tensor:
        """Negated logits (B, V, 3); the reference runs this pass with autocast off."""
        with autocast_off(kv.device):
            q = self.blocks[-1](self.proj_query(query_embed.float()), kv.float())
            return -self.proj_out(self.norm_out(q))

    def logits(self, latent, framestep, source_alpha, target_alphas, query) -> torch.Tensor:
        """Negated logits (B, K, V, 3), one full self-attention pass per target time."""
        b, t, n, _ = latent.shape
        tokens = self.post_quant(latent).reshape(b, t * n, -1)
        rope = self.rope(framestep, n)
        alphas = self.alpha_tokens(source_alpha, target_alphas)
        qe = self.embed_query(query)
        return torch.stack([self.query_logits(self.kv_cache(tokens, alphas[:, i], rope), qe)
                            for i in range(alphas.shape[1])], dim=1)

    def forward(self, latent: torch.Tensor, framestep: torch.Tensor, source_alpha: torch.Tensor,
                target_alphas: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """latent (B,T,N,C), framestep (B,T), source_alpha (B,), target_alphas (B,K), query (B,V,6)
        -> vertex positions (B,K,V,3) in [-1, 1] (clamp them for the reference's final vertices)."""
        return 2 * torch.sigmoid(self.logits(latent, framestep, source_alpha, target_alphas, query)) - 1
