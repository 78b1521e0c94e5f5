"""Shared building blocks of the TripoSG / ActionMesh transformers.

Every numerical convention here is the reference's (docs/architecture.md 4): the
heads-first fused q/k/v packing, per-head RMSNorm on q/k, interleaved (GPT-J) RoPE in fp32, fp32
layer norms, exact-GELU feed-forward and the two time sinusoids ([sin|cos] vs [cos|sin]).
Submodule names are the checkpoints' own so that ``state_dict()`` keys equal the official keys.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..device import rules

# A probe sees (q, k) exactly as the attention uses them: (B, H, S, d) after split, q/k norm and RoPE.
Probe = Callable[[torch.Tensor, torch.Tensor], None]


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back: an fp32 island under autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class RMSNorm(nn.Module):
    """Per-head RMSNorm (diffusers semantics): variance in fp32, result promoted by the weight dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.float().pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(var + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        return x * self.weight


class GELUProj(nn.Module):
    """``ff.net.0``: Linear then exact (erf) GELU; the Linear is named ``proj`` as in the checkpoints."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    """``ff.net = [GELUProj, dropout (no params), Linear]`` so keys read ``net.0.proj`` / ``net.2``."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.net = nn.ModuleList([GELUProj(dim, inner), nn.Identity(), nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


def _freqs(half: int, device=None) -> torch.Tensor:
    """exp(-ln(1e4) k / half) with an fp32 exponent (as the reference) but a correctly rounded exp:
    vectorised fp32 exp differs by an ulp across CPUs, which moves sin(t f) at t ~ 1000 by ~3e-5.
    Computed on the host (float64 exists everywhere there, not on MPS), then copied to ``device``."""
    return _host_freqs(half).to(device)


@functools.cache
def _host_freqs(half: int) -> torch.Tensor:
    exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half
    return torch.exp(exponent.double()).float()


MPS_SCORE_ELEMENTS = 1 << 26  # attention scores per SDPA call on MPS (256 MiB in fp32)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA over (B, H, S, d). On MPS in query chunks: its kernel builds the whole score matrix
    (stage I at full size: ~64 GiB per batch row); rows are independent, so the chunks are exact."""
    per_query = q.shape[0] * q.shape[1] * k.shape[2]
    if rules(q.device) != "mps" or per_query * q.shape[2] <= MPS_SCORE_ELEMENTS:
        return F.scaled_dot_product_attention(q, k, v)
    rows = max(1, MPS_SCORE_ELEMENTS // per_query)
    return torch.cat([F.scaled_dot_product_attention(part, k, v) for part in q.split(rows, dim=2)], dim=2)


def autocast_off(device):
    """An fp32 island: autocast off inside. A device type without autocast has none to turn off."""
    kind = torch.device(device).type
    return torch.autocast(kind, enabled=False) if torch.amp.is_autocast_available(kind) else contextlib.nullcontext()


def time_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """diffusers ``Timesteps(dim, flip_sin_to_cos=False, shift=0)``: [sin | cos] in fp32 (odd ``dim``: zero-padded)."""
    a = t.float()[:, None] * _freqs(dim // 2, t.device)[None]
    return F.pad(torch.cat([torch.sin(a), torch.cos(a)], dim=-1), (0, dim % 2))


def alpha_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Stage-II ``TimestepEmbedder``: [cos | sin] (the opposite order to ``time_sinusoid``)."""
    a = t.float()[:, None] * _freqs(dim // 2, t.device)[None]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=-1)


class TimestepEmbedding(nn.Module):
    """``time_proj``: sinusoid -> linear_1 -> exact GELU -> linear_2 (width -> hidden -> width)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.linear_1 = nn.Linear(dim, hidden)
        self.linear_2 = nn.Linear(hidden, dim)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(emb)))


def fourier_features(xyz: torch.Tensor, num_freqs: int = 8, include_pi: bool = False) -> torch.Tensor:
    """[x, sin(x 2^k), cos(x 2^k)] grouped sin-block then cos-block, coordinate-major (3 + 6 F dims)."""
    f = 2.0 ** torch.arange(num_freqs, dtype=torch.float32, device=xyz.device)
    if include_pi:
        f = f * math.pi
    a = (xyz[..., None] * f).reshape(*xyz.shape[:-1], -1)
    return torch.cat([xyz, torch.sin(a), torch.cos(a)], dim=-1)


def rope_tables(positions: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Interleaved RoPE tables for positions (...,): cos/sin (..., head_dim) reading [c0, c0, c1, c1, ...]."""
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    phase = positions.float()[..., None] * inv
    return torch.cos(phase).repeat_interleave(2, -1), torch.sin(phase).repeat_interleave(2, -1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """GPT-J rotation in fp32: rot(x)[2k] = -x[2k+1], rot(x)[2k+1] = x[2k]. cos/sin broadcast as (B, 1, S, d)."""
    xr, xi = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    rot = torch.stack([-xi, xr], dim=-1).flatten(-2)
    return (x.float() * cos + rot * sin).to(x.dtype)


@dataclass(frozen=True)
class CrossKV:
    """A cross-attention's keys and values (B, H, S, d) of one context per batch row, passed as the
    context: rows can be picked (``kv[rows]``) for batched queries against several contexts."""

    k: torch.Tensor
    v: torch.Tensor

    def __getitem__(self, rows) -> CrossKV:
        return CrossKV(self.k[rows], self.v[rows])

    @property
    def device(self) -> torch.device:
        return self.k.device

    @staticmethod
    def cat(parts: list[CrossKV]) -> CrossKV:
        return CrossKV(torch.cat([p.k for p in parts]), torch.cat([p.v for p in parts]))


class Attention(nn.Module):
    """Multi-head attention with the checkpoints' heads-first fused packing.

    Self-attention packs ``[q | k | v]`` as (H, 3d); cross-attention packs ``[k | v]`` as (H, 2d) and
    splits q normally; d = dim // H, so the projections are H·d wide (less than dim when H does not
    divide it, as diffusers). ``probes`` (installed by ``capture``) see the q/k actually used, after
    the output has been computed by the same SDPA call as without them, so probing cannot change it.
    """

    def __init__(self, dim: int, heads: int, kv_dim: Optional[int] = None, *, cross: bool = False,
                 qk_norm: bool = False, norm_cross: bool = False):
        super().__init__()
        kv_dim = kv_dim or dim
        self.heads, self.head_dim, self.cross = heads, dim // heads, cross
        inner = heads * self.head_dim
        if norm_cross:
            self.norm_cross = nn.LayerNorm(kv_dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(kv_dim, inner, bias=False)
        self.to_v = nn.Linear(kv_dim, inner, bias=False)
        if qk_norm:
            self.norm_q = RMSNorm(self.head_dim)
            self.norm_k = RMSNorm(self.head_dim)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])
        self.probes: list[Probe] = []

    def qkv(self, x: torch.Tensor, context: Optional[torch.Tensor] = None,
            rope: Optional[tuple[torch.Tensor, torch.Tensor]] = None):
        """(q, k, v) as (B, H, S, d), after the fused split, q/k norm and RoPE."""
        b, s, _ = x.shape
        h, d = self.heads, self.head_dim
        if isinstance(context, CrossKV):  # keys and values made once for every call against a context
            q = self.to_q(x).view(b, s, h, d).transpose(1, 2)
            return (self.norm_q(q) if hasattr(self, "norm_q") else q), context.k, context.v
        if self.cross:
            k, v = self._context_kv(context)
            q = self.to_q(x).view(b, s, h, d)
        else:
            qkv = torch.cat([self.to_q(x), self.to_k(x), self.to_v(x)], -1).view(b, s, h, 3 * d)
            q, k, v = qkv.split(d, dim=-1)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        if hasattr(self, "norm_q"):
            q, k = self.norm_q(q), self.norm_k(k)
        if rope is not None:
            cos, sin = (t[:, None] for t in rope)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v

    def _context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values (B, S, H, d) of ``context``, split from their fused packing."""
        if hasattr(self, "norm_cross"):
            context = self.norm_cross(context)
        kv = torch.cat([self.to_k(context), self.to_v(context)], -1)
        return kv.view(*context.shape[:2], self.heads, 2 * self.head_dim).split(self.head_dim, dim=-1)

    def cross_kv(self, context: torch.Tensor) -> CrossKV:
        """This cross-attention's keys and values of ``context``, as ``forward`` would make them on every
        call (the VAE decoder queries one latent's context many times)."""
        k, v = (t.transpose(1, 2) for t in self._context_kv(context))
        return CrossKV(self.norm_k(k) if hasattr(self, "norm_k") else k, v)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None,
                rope: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        q, k, v = self.qkv(x, context, rope)
        out = attend(q, k, v)
        for probe in self.probes:  # after the output exists: a probe only reads q and k
            probe(q, k)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        return self.to_out[0](out)


@dataclass(frozen=True)
class BlockNames:
    """Checkpoint names of a block's submodules (TripoSG and ActionMesh name the same parts differently)."""

    norm_sa: str
    sa: str
    norm_xa: str
    xa: str
    norm_ff: str
    skip_linear: str
    skip_norm: str
    norm_xa2: str = "norm2_2"  # TripoSG's optional second cross-attention
    xa2: str = "attn2_2"


TRIPOSG_NAMES = BlockNames("norm1", "attn1", "norm2", "attn2", "norm3", "skip_linear", "skip_norm")
ACTIONMESH_NAMES = BlockNames("norm_s_attn", "s_attn", "norm_x_attn", "x_attn", "norm_ff",
                              "linear_skip", "norm_skip")


class Block(nn.Module):
    """Pre-norm residual block shared by all four models: [skip fuse] -> self -> cross -> FF.

    Parts are optional (VAE cross-only / self-only blocks); names come from ``BlockNames``. A second
    cross-attention (TripoSG ``use_cross_attention_2``) reads its own context, from the same input.
    """

    def __init__(self, dim: int, heads: int, names: BlockNames, *, self_attn: bool = True,
                 cross_dim: Optional[int] = None, qk_norm: bool = False, norm_cross: bool = False,
                 skip: bool = False, ff_inner: Optional[int] = None, cross2_dim: Optional[int] = None):
        super().__init__()
        self.names = names
        self.has_sa, self.has_xa, self.has_skip = self_attn, cross_dim is not None, skip
        self.has_xa2 = cross2_dim is not None
        if skip:
            self.add_module(names.skip_linear, nn.Linear(2 * dim, dim))
            self.add_module(names.skip_norm, FP32LayerNorm(dim))
        if self_attn:
            self.add_module(names.norm_sa, FP32LayerNorm(dim))
            self.add_module(names.sa, Attention(dim, heads, qk_norm=qk_norm))
        if cross_dim is not None:
            self.add_module(names.norm_xa, FP32LayerNorm(dim))
            self.add_module(names.xa, Attention(dim, heads, cross_dim, cross=True, qk_norm=qk_norm,
                                                norm_cross=norm_cross))
        if cross2_dim is not None:
            self.add_module(names.norm_xa2, FP32LayerNorm(dim))
            self.add_module(names.xa2, Attention(dim, heads, cross2_dim, cross=True, qk_norm=qk_norm))
        self.add_module(names.norm_ff, FP32LayerNorm(dim))
        self.ff = FeedForward(dim, 4 * dim if ff_inner is None else ff_inner)

    def part(self, role: str) -> nn.Module:
        return getattr(self, getattr(self.names, role))

    @property
    def self_attention(self) -> Attention:
        return self.part("sa")

    @property
    def cross_attention(self) -> Attention:
        return self.part("xa")

    def forward(self, h: torch.Tensor, context: Optional[torch.Tensor] = None,
                skip: Optional[torch.Tensor] = None, rope=None,
                attend: Optional[Callable] = None, context2: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``attend(attn, x, rope)`` overrides how the self-attention is applied (frame inflation)."""
        if self.has_skip:
            h = self.part("skip_norm")(self.part("skip_linear")(torch.cat([skip, h], dim=-1)))
        if self.has_sa:
            x = self.part("norm_sa")(h)
            h = h + (attend(self.part("sa"), x, rope) if attend else self.part("sa")(x, rope=rope))
        if self.has_xa2:  # both cross-attentions read the same h (the reference sums them)
            h = h + self.part("xa")(self.part("norm_xa")(h), context) + self.part("xa2")(self.part("norm_xa2")(h),
                                                                                        context2)
        elif self.has_xa:
            h = h + self.part("xa")(self.part("norm_xa")(h), context)
        return h + self.ff(self.part("norm_ff")(h))


def run_unet_blocks(blocks: nn.ModuleList, h: torch.Tensor, step: Callable) -> torch.Tensor:
    """U-Net long skips of the DiT and denoiser: block i < L//2 pushes, block i > L//2 pops (LIFO).

    ``step(i, block, h, skip)`` runs block i.
    """
    mid, skips = len(blocks) // 2, []
    for i, block in enumerate(blocks):
        h = step(i, block, h, skips.pop() if i > mid else None)
        if i < mid:
            skips.append(h)
    return h
