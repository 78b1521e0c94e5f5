"""Config -> architecture rules of the five backbone models, written once, as the references derive them.

Each ``*_dims`` function turns an official ``config.json`` dict into the derived sizes its model is built
from; each ``*_shapes`` function lists every state-dict tensor that size implies. The models read their
sizes from here, and ``tests/engine/test_model_shapes.py`` builds each model from random valid configs
and checks its whole state dict against ``*_shapes``; the fixture checkpoints (written by the reference
code) are checked against the same rules. Sources (references at the fixture commits):

- TripoSG DiT (``TripoSGDiTModel``): feed-forward and time projection are both ``4·width`` wide
  (``mlp_ratio`` is a constant 4.0 there, not a config key); q/k/v without bias; RMS q/k norm per head;
  ``use_cross_attention_2`` adds ``norm2_2`` / ``attn2_2`` reading a ``cross_attention_2_dim`` context.
- ActionMesh denoiser: the same blocks, but the feed-forward is ``int(width·mlp_ratio)`` from its config
  while the time projection stays ``4·width`` (diffusers ``TimestepEmbedding(width, 4·width)``);
  ``inflated_layers`` carries no weights (absent, it is 0..20 as in the reference dataclass).
- Attention (diffusers ``Attention``): ``head_dim = dim // heads`` and the projections are
  ``heads·head_dim`` wide, which is less than ``dim`` when heads do not divide it.
- Point features (``FrequencyPositionalEmbedding``): ``in·(2F + 1)`` dims; the VAE encoder adds
  ``in_channels`` feature channels (normals), the autoencoder ``in_extra_channels``.
- VAE / autoencoder blocks: feed-forward ``4·width``; the cross block normalises its key/value input
  (``norm_cross``, a LayerNorm with bias); no q/k norm.
- DINOv2 (transformers ``Dinov2Model``): MLP ``int(hidden·mlp_ratio)``, or SwiGLU with
  ``round8(int(that·2/3))``; position table ``(image_size // patch)² + 1`` rows; optional mask token
  and q/k/v biases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .configs import config

Shapes = dict[str, tuple[int, ...]]

# transformers ``Dinov2Config`` defaults, for keys a config.json leaves out
DINOV2_DEFAULTS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "mlp_ratio": 4,
                   "hidden_act": "gelu", "layer_norm_eps": 1e-6, "image_size": 224, "patch_size": 14,
                   "num_channels": 3, "qkv_bias": True, "layerscale_value": 1.0, "use_swiglu_ffn": False,
                   "use_mask_token": True}


def with_defaults(component: str, cfg: dict) -> dict:
    """``cfg`` over the reference class's defaults (which are the released configs, see ``configs.py``)."""
    return {**config(component, "full"), **cfg}


# --------------------------------------------------------------------------- derived sizes

@dataclass(frozen=True)
class FlowDims:
    """TripoSG DiT / ActionMesh denoiser."""

    width: int
    heads: int
    layers: int
    in_channels: int
    cross_dim: int
    ff_inner: int
    time_hidden: int
    cross2_dim: Optional[int] = None  # TripoSG ``use_cross_attention_2``

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def has_skip(self, layer: int) -> bool:
        return layer > self.layers // 2


@dataclass(frozen=True)
class VAEDims:
    in_channels: int
    latent: int
    heads: int
    width_enc: int
    width_dec: int
    layers_enc: int
    layers_dec: int
    freqs: int
    include_pi: bool

    @property
    def point_dim(self) -> int:
        return fourier_dim(self.in_channels, self.freqs)


@dataclass(frozen=True)
class AutoencoderDims:
    in_channels: int
    extra_channels: int
    out_dim: int
    latent: int
    width: int
    layers: int
    heads: int
    freqs: int
    include_pi: bool

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def query_dim(self) -> int:
        return fourier_dim(self.in_channels, self.freqs) + self.extra_channels


def fourier_dim(in_channels: int, freqs: int) -> int:
    """``FrequencyPositionalEmbedding`` with the input kept: ``in·(2F + 1)`` (just ``in`` when F = 0)."""
    return in_channels * (2 * freqs + 1)


def attention_inner(dim: int, heads: int) -> int:
    return heads * (dim // heads)


def triposg_dit_dims(cfg: dict) -> FlowDims:
    cfg = with_defaults("transformer", cfg)
    w = cfg["width"]
    return FlowDims(w, cfg["num_attention_heads"], cfg["num_layers"], cfg["in_channels"],
                    cfg["cross_attention_dim"], ff_inner=int(w * 4.0), time_hidden=w * 4,
                    cross2_dim=cfg.get("cross_attention_2_dim") if cfg.get("use_cross_attention_2") else None)


def denoiser_dims(cfg: dict) -> FlowDims:
    cfg = with_defaults("denoiser", cfg)
    w = cfg["width"]
    return FlowDims(w, cfg["num_attention_heads"], cfg["num_layers"], cfg["in_channels"],
                    cfg["cross_attention_dim"], ff_inner=int(w * cfg["mlp_ratio"]), time_hidden=w * 4)


def vae_dims(cfg: dict) -> VAEDims:
    cfg = with_defaults("vae", cfg)
    return VAEDims(cfg["in_channels"], cfg["latent_channels"], cfg["num_attention_heads"], cfg["width_encoder"],
                   cfg["width_decoder"], cfg["num_layers_encoder"], cfg["num_layers_decoder"],
                   cfg["embed_frequency"], cfg["embed_include_pi"])


def autoencoder_dims(cfg: dict) -> AutoencoderDims:
    cfg = with_defaults("autoencoder", cfg)
    return AutoencoderDims(cfg["in_channels"], cfg["in_extra_channels"], cfg["out_dim"], cfg["latent_channels"],
                           cfg["width"], cfg["num_layers"], cfg["num_attention_heads"], cfg["embed_frequency"],
                           cfg["embed_include_pi"])


def dinov2_mlp_hidden(hidden: int, mlp_ratio: float, swiglu: bool) -> int:
    inner = int(hidden * mlp_ratio)
    return (int(inner * 2 / 3) + 7) // 8 * 8 if swiglu else inner


# --------------------------------------------------------------------------- state-dict shapes

def _linear(name: str, n_in: int, n_out: int, bias: bool = True) -> Shapes:
    return {f"{name}.weight": (n_out, n_in), **({f"{name}.bias": (n_out,)} if bias else {})}


def _norm(name: str, dim: int) -> Shapes:
    return {f"{name}.weight": (dim,), f"{name}.bias": (dim,)}


def _attention(name: str, dim: int, heads: int, kv_dim: Optional[int] = None, *, qk_norm: bool,
               norm_cross: bool = False) -> Shapes:
    inner, kv = attention_inner(dim, heads), kv_dim or dim
    out = {**_linear(f"{name}.to_q", dim, inner, False), **_linear(f"{name}.to_k", kv, inner, False),
           **_linear(f"{name}.to_v", kv, inner, False), **_linear(f"{name}.to_out.0", inner, dim)}
    if qk_norm:
        out |= {f"{name}.norm_q.weight": (dim // heads,), f"{name}.norm_k.weight": (dim // heads,)}
    if norm_cross:
        out |= _norm(f"{name}.norm_cross", kv)
    return out


def _ff(name: str, dim: int, inner: int) -> Shapes:
    return {**_linear(f"{name}.net.0.proj", dim, inner), **_linear(f"{name}.net.2", inner, dim)}


def block_shapes(p: str, dim: int, heads: int, names: dict[str, str], *, self_attn: bool = True,
                 cross_dim: Optional[int] = None, cross2_dim: Optional[int] = None, qk_norm: bool = False,
                 norm_cross: bool = False, skip: bool = False, ff_inner: Optional[int] = None) -> Shapes:
    """One pre-norm block; ``names`` maps roles (sa, norm_sa, xa, ...) to the checkpoint's names."""
    out: Shapes = {}
    if skip:
        out |= _linear(f"{p}.{names['skip_linear']}", 2 * dim, dim) | _norm(f"{p}.{names['skip_norm']}", dim)
    if self_attn:
        out |= _norm(f"{p}.{names['norm_sa']}", dim) | _attention(f"{p}.{names['sa']}", dim, heads, qk_norm=qk_norm)
    if cross_dim is not None:
        out |= _norm(f"{p}.{names['norm_xa']}", dim)
        out |= _attention(f"{p}.{names['xa']}", dim, heads, cross_dim, qk_norm=qk_norm, norm_cross=norm_cross)
    if cross2_dim is not None:
        out |= _norm(f"{p}.norm2_2", dim) | _attention(f"{p}.attn2_2", dim, heads, cross2_dim, qk_norm=qk_norm)
    ff_inner = 4 * dim if ff_inner is None else ff_inner
    return out | _norm(f"{p}.{names['norm_ff']}", dim) | _ff(f"{p}.ff", dim, ff_inner)


TRIPOSG = {"norm_sa": "norm1", "sa": "attn1", "norm_xa": "norm2", "xa": "attn2", "norm_ff": "norm3",
           "skip_linear": "skip_linear", "skip_norm": "skip_norm"}
ACTIONMESH = {"norm_sa": "norm_s_attn", "sa": "s_attn", "norm_xa": "norm_x_attn", "xa": "x_attn",
              "norm_ff": "norm_ff", "skip_linear": "linear_skip", "skip_norm": "norm_skip"}


def _flow_shapes(d: FlowDims, names: dict[str, str]) -> Shapes:
    w = d.width
    out = _linear("time_proj.linear_1", w, d.time_hidden) | _linear("time_proj.linear_2", d.time_hidden, w)
    out |= _linear("proj_in", d.in_channels, w)
    for i in range(d.layers):
        out |= block_shapes(f"blocks.{i}", w, d.heads, names, cross_dim=d.cross_dim, cross2_dim=d.cross2_dim,
                            qk_norm=True, skip=d.has_skip(i), ff_inner=d.ff_inner)
    return out | _norm("norm_out", w) | _linear("proj_out", w, d.in_channels)


def triposg_dit_shapes(cfg: dict) -> Shapes:
    return _flow_shapes(triposg_dit_dims(cfg), TRIPOSG)


def denoiser_shapes(cfg: dict) -> Shapes:
    return _flow_shapes(denoiser_dims(cfg), ACTIONMESH)


def vae_shapes(cfg: dict) -> Shapes:
    d = vae_dims(cfg)
    we, wd = d.width_enc, d.width_dec
    out = _linear("encoder.proj_in", d.point_dim + d.in_channels, we)
    out |= block_shapes("encoder.blocks.0", we, d.heads, TRIPOSG, self_attn=False, cross_dim=we, norm_cross=True)
    for i in range(d.layers_enc):
        out |= block_shapes(f"encoder.blocks.{i + 1}", we, d.heads, TRIPOSG)
    out |= _norm("encoder.norm_out", we)
    for i in range(d.layers_dec):
        out |= block_shapes(f"decoder.blocks.{i}", wd, d.heads, TRIPOSG)
    out |= block_shapes(f"decoder.blocks.{d.layers_dec}", wd, d.heads, TRIPOSG, self_attn=False, cross_dim=wd,
                        norm_cross=True)
    out |= _linear("decoder.proj_query", d.point_dim, wd) | _norm("decoder.norm_out", wd)
    out |= _linear("decoder.proj_out", wd, 1)
    return out | _linear("quant", we, 2 * d.latent) | _linear("post_quant", d.latent, wd)


def autoencoder_shapes(cfg: dict) -> Shapes:
    d = autoencoder_dims(cfg)
    w = d.width
    out: Shapes = {}
    for i in range(d.layers):
        out |= block_shapes(f"blocks.{i}", w, d.heads, ACTIONMESH)
    out |= block_shapes(f"blocks.{d.layers}", w, d.heads, ACTIONMESH, self_attn=False, cross_dim=w, norm_cross=True)
    out |= _linear("proj_query", d.query_dim, w) | _norm("norm_out", w) | _linear("proj_out", w, d.out_dim)
    return out | _linear("post_quant", d.latent, w)


def dinov2_shapes(cfg: dict) -> Shapes:
    """``Dinov2Model`` state dict (transformers defaults for keys the config leaves out)."""
    cfg = {**DINOV2_DEFAULTS, **cfg}
    h, p = cfg["hidden_size"], cfg["patch_size"]
    grid = cfg["image_size"] // p
    mlp = dinov2_mlp_hidden(h, cfg["mlp_ratio"], cfg["use_swiglu_ffn"])
    out: Shapes = {"embeddings.cls_token": (1, 1, h), "embeddings.position_embeddings": (1, grid * grid + 1, h),
                   "embeddings.patch_embeddings.projection.weight": (h, cfg["num_channels"], p, p),
                   "embeddings.patch_embeddings.projection.bias": (h,)}
    if cfg["use_mask_token"]:
        out["embeddings.mask_token"] = (1, h)
    for i in range(cfg["num_hidden_layers"]):
        q = f"encoder.layer.{i}"
        for part in ("query", "key", "value"):
            out |= _linear(f"{q}.attention.attention.{part}", h, h, cfg["qkv_bias"])
        out |= _linear(f"{q}.attention.output.dense", h, h) | _norm(f"{q}.norm1", h) | _norm(f"{q}.norm2", h)
        out |= {f"{q}.layer_scale1.lambda1": (h,), f"{q}.layer_scale2.lambda1": (h,)}
        if cfg["use_swiglu_ffn"]:
            out |= _linear(f"{q}.mlp.weights_in", h, 2 * mlp) | _linear(f"{q}.mlp.weights_out", mlp, h)
        else:
            out |= _linear(f"{q}.mlp.fc1", h, mlp) | _linear(f"{q}.mlp.fc2", mlp, h)
    return out | _norm("layernorm", h)
