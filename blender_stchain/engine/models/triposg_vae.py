"""TripoSG VecSet VAE: ``vae/`` of VAST-AI/TripoSG (encoder: surface -> latent tokens; decoder: tokens -> SDF logits)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .configs import architecture
from .layers import TRIPOSG_NAMES, Block, CrossKV, fourier_features
from .shapes import VAEDims, vae_dims

DECODE_CHUNK = 50_000  # query points per decoder pass, as the reference


@dataclass
class Posterior:
    """Diagonal Gaussian over latents; ``logvar`` is clamped to [-30, 20] as in the reference."""

    parameters: torch.Tensor  # raw ``quant`` output (B, N, 2C)
    mean: torch.Tensor
    logvar: torch.Tensor
    std: torch.Tensor
    sample: torch.Tensor  # mean + std * eps (= mean when no eps was given)


class TripoSGEncoder(nn.Module):
    """Cross-attention from sampled surface points to all of them (block 0), then self-attention."""

    def __init__(self, width: int, heads: int, layers: int, in_dim: int):
        super().__init__()
        self.proj_in = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(
            [Block(width, heads, TRIPOSG_NAMES, self_attn=False, cross_dim=width, norm_cross=True)]
            + [Block(width, heads, TRIPOSG_NAMES) for _ in range(layers)])
        self.norm_out = nn.LayerNorm(width)

    def forward(self, query_feat: torch.Tensor, surface_feat: torch.Tensor) -> torch.Tensor:
        kv = self.proj_in(surface_feat)  # proj_in is shared by queries and keys/values
        h = self.blocks[0](self.proj_in(query_feat), kv)
        for blk in self.blocks[1:]:
            h = blk(h)
        return self.norm_out(h)


class TripoSGDecoder(nn.Module):
    """Self-attention over latent tokens, then one cross-attention block for query points."""

    def __init__(self, width: int, heads: int, layers: int, query_dim: int, out_dim: int = 1):
        super().__init__()
        self.blocks = nn.ModuleList(
            [Block(width, heads, TRIPOSG_NAMES) for _ in range(layers)]
            + [Block(width, heads, TRIPOSG_NAMES, self_attn=False, cross_dim=width, norm_cross=True)])
        self.proj_query = nn.Linear(query_dim, width)
        self.norm_out = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, out_dim)

    def kv_cache(self, h: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks[:-1]:
            h = blk(h)
        return h

    def query(self, kv: torch.Tensor, query_feat: torch.Tensor) -> torch.Tensor:
        """Raw (un-negated) output for embedded queries against a kv cache."""
        q = self.blocks[-1](self.proj_query(query_feat), kv)
        return self.proj_out(self.norm_out(q))


class TripoSGVAE(nn.Module):
    ARCH = {"in_channels", "latent_channels", "num_attention_heads", "width_encoder", "width_decoder",
            "num_layers_encoder", "num_layers_decoder", "embedding_type", "embed_frequency", "embed_include_pi"}

    def __init__(self, dims: VAEDims):
        super().__init__()
        self.dims = dims
        self.freqs, self.include_pi = dims.freqs, dims.include_pi
        # the encoder reads [Fourier(position), the in_channels feature channels (normals)]
        self.encoder = TripoSGEncoder(dims.width_enc, dims.heads, dims.layers_enc, dims.point_dim + dims.in_channels)
        self.decoder = TripoSGDecoder(dims.width_dec, dims.heads, dims.layers_dec, dims.point_dim)
        self.quant = nn.Linear(dims.width_enc, 2 * dims.latent)
        self.post_quant = nn.Linear(dims.latent, dims.width_dec)

    @classmethod
    def from_config(cls, cfg: dict) -> "TripoSGVAE":
        kw = architecture(cfg, cls.ARCH, "TripoSG VAE")
        if kw.get("embedding_type", "frequency") != "frequency":
            raise NotImplementedError(f"TripoSG VAE: embedding_type {kw['embedding_type']!r} is not supported")
        return cls(vae_dims(kw))

    def embed(self, xyz: torch.Tensor) -> torch.Tensor:
        return fourier_features(xyz, self.freqs, self.include_pi)

    def encode(self, surface: torch.Tensor, sample_indices: torch.Tensor,
               eps: Optional[torch.Tensor] = None) -> Posterior:
        """surface (B, P, 2·in) position + normal; sample_indices (N,) the token seeds (FPS); eps (B, N, C)."""
        c = self.dims.in_channels
        feat = torch.cat([self.embed(surface[..., :c]), surface[..., c:]], dim=-1)
        params = self.quant(self.encoder(feat[:, sample_indices], feat))
        mean, logvar = params.chunk(2, dim=-1)
        logvar = logvar.clamp(-30.0, 20.0)
        std = torch.exp(0.5 * logvar)
        return Posterior(params, mean, logvar, std, mean if eps is None else mean + std * eps)

    def decode_kv(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, N, C) -> decoder kv cache (B, N, W); reuse it across query chunks."""
        return self.decoder.kv_cache(self.post_quant(latents))

    def decode_cross_kv(self, latents: torch.Tensor) -> CrossKV:
        """Latents (B, N, C) -> the decoder cross-attention's keys and values, made once per latent so
        that no query call recomputes them (pass them to ``query`` as ``kv``). Each latent's alone: a
        row's numbers then never depend on the batch it came in."""
        h = self.decode_kv(latents)
        attention = self.decoder.blocks[-1].cross_attention
        return CrossKV.cat([attention.cross_kv(h[i : i + 1]) for i in range(h.shape[0])])

    def query(self, kv: torch.Tensor | CrossKV, points: torch.Tensor, chunk: int = DECODE_CHUNK) -> torch.Tensor:
        """SDF logits (B, Nq, 1) for points (B, Nq, 3), positive inside (the reference's sign flip)."""
        return torch.cat([-self.decoder.query(kv, self.embed(p)) for p in points.split(chunk, dim=1)], dim=1)

    def decode(self, latents: torch.Tensor, query_points: torch.Tensor, chunk: int = DECODE_CHUNK) -> torch.Tensor:
        return self.query(self.decode_kv(latents), query_points, chunk)
