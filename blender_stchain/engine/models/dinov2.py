"""DINOv2 image encoder with the semantics and state-dict keys of transformers' ``Dinov2Model``.

Both TripoSG (stage 0) and ActionMesh (stage I) condition on ``last_hidden_state``: the token
sequence [CLS, 16x16 patches] after the final LayerNorm, (B, 257, D) for 224 px input. The model is
built from the official ``config.json`` dict so the released ``facebook/dinov2-large`` (or TripoSG's
``image_encoder_dinov2/``) checkpoint loads strictly by its own keys.

Parity trap (docs/architecture.md 4): the 37x37 position table trained at
518 px is resized to the input's patch grid with torch's bicubic (A = -0.75), ``size=`` (not
``scale_factor=``), ``align_corners=False``, no antialias, computed in fp32.
ActionMesh runs this encoder in fp32 outside autocast; callers should do the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ...contracts.errors import WeightsError
from .shapes import DINOV2_DEFAULTS, dinov2_mlp_hidden

_FULL = {  # facebook/dinov2-large config.json (architectural keys)
    "architectures": ["Dinov2Model"],
    "model_type": "dinov2",
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "mlp_ratio": 4,
    "image_size": 518,
    "patch_size": 14,
    "num_channels": 3,
    "layer_norm_eps": 1e-06,
    "layerscale_value": 1.0,
    "qkv_bias": True,
    "use_swiglu_ffn": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "drop_path_rate": 0.0,
    "initializer_range": 0.02,
}

DINOV2_CONFIGS: dict[str, dict] = {
    # the released DINOv2-L/14 (304,368,640 parameters)
    "full": _FULL,
    # CI-scale CPU runs: same patch size and 518 px position table, so the same 224 px preprocessing
    # and 257 tokens; the small DiT/denoiser cross-attention width must equal this hidden_size (256).
    "small": {**_FULL, "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4},
    # the reference fixture config (fixtures/reference/dinov2/checkpoint/config.json)
    "tiny": {**_FULL, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4},
}


# transformers ``ACT2FN`` entries a DINOv2 config may name (shape-neutral)
ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu, "swish": F.silu,
               "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh")}


@dataclass(frozen=True)
class Dinov2Config:
    """The architectural subset of a ``Dinov2Config`` (transformers defaults); other keys are ignored."""

    hidden_size: int = DINOV2_DEFAULTS["hidden_size"]
    num_hidden_layers: int = DINOV2_DEFAULTS["num_hidden_layers"]
    num_attention_heads: int = DINOV2_DEFAULTS["num_attention_heads"]
    mlp_ratio: float = DINOV2_DEFAULTS["mlp_ratio"]
    image_size: int = DINOV2_DEFAULTS["image_size"]
    patch_size: int = DINOV2_DEFAULTS["patch_size"]
    num_channels: int = DINOV2_DEFAULTS["num_channels"]
    layer_norm_eps: float = DINOV2_DEFAULTS["layer_norm_eps"]
    layerscale_value: float = DINOV2_DEFAULTS["layerscale_value"]
    qkv_bias: bool = DINOV2_DEFAULTS["qkv_bias"]
    use_mask_token: bool = DINOV2_DEFAULTS["use_mask_token"]
    use_swiglu_ffn: bool = DINOV2_DEFAULTS["use_swiglu_ffn"]
    hidden_act: str = DINOV2_DEFAULTS["hidden_act"]

    @classmethod
    def from_dict(cls, cfg: dict) -> "Dinov2Config":
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in cfg.items() if k in known})
        if config.hidden_act not in ACTIVATIONS:
            raise WeightsError(f"DINOv2 config: hidden_act {config.hidden_act!r} is not supported; "
                               f"supported: {', '.join(ACTIVATIONS)}")
        if config.hidden_size % config.num_attention_heads:
            raise WeightsError("DINOv2 config: hidden_size must be a multiple of num_attention_heads")
        return config

    @property
    def mlp_hidden(self) -> int:
        return dinov2_mlp_hidden(self.hidden_size, self.mlp_ratio, self.use_swiglu_ffn)


class _PatchEmbeddings(nn.Module):
    def __init__(self, c: Dinov2Config):
        super().__init__()
        self.projection = nn.Conv2d(c.num_channels, c.hidden_size, c.patch_size, stride=c.patch_size)


class Dinov2Embeddings(nn.Module):
    def __init__(self, c: Dinov2Config):
        super().__init__()
        grid = c.image_size // c.patch_size
        self.patch_size = c.patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
        if c.use_mask_token:  # unused at inference, present in the official checkpoints
            self.mask_token = nn.Parameter(torch.zeros(1, c.hidden_size))
        self.patch_embeddings = _PatchEmbeddings(c)
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid + 1, c.hidden_size))

    def interpolated_positions(self, height: int, width: int) -> torch.Tensor:
        """Position table for a (height, width) pixel input: (1, 1 + gh*gw, D), CLS entry unchanged."""
        table = self.position_embeddings
        n = table.shape[1] - 1
        gh, gw = height // self.patch_size, width // self.patch_size
        if gh * gw == n and height == width:
            return table
        side = math.isqrt(n)
        grid = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(gh, gw), mode="bicubic", align_corners=False)
        grid = grid.to(table.dtype).permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        return torch.cat([table[:, :1], grid], dim=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        dtype = self.patch_embeddings.projection.weight.dtype
        patches = self.patch_embeddings.projection(pixel_values.to(dtype)).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        tokens = torch.cat([cls, patches], dim=1)
        return tokens + self.interpolated_positions(*pixel_values.shape[-2:])


class _SelfAttention(nn.Module):
    """Standard multi-head attention (q, k, v each split head-major in the usual order)."""

    def __init__(self, c: Dinov2Config):
        super().__init__()
        d = c.hidden_size
        self.heads = c.num_attention_heads
        self.query = nn.Linear(d, d, bias=c.qkv_bias)
        self.key = nn.Linear(d, d, bias=c.qkv_bias)
        self.value = nn.Linear(d, d, bias=c.qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape

        def split(t):
            return t.view(b, s, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return out.transpose(1, 2).reshape(b, s, d)


class _AttentionOutput(nn.Module):
    def __init__(self, c: Dinov2Config):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)


class _Attention(nn.Module):
    def __init__(self, c: Dinov2Config):
        super().__init__()
        self.attention = _SelfAttention(c)
        self.output = _AttentionOutput(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output.dense(self.attention(x))


class _LayerScale(nn.Module):
    def __init__(self, c: Dinov2Config):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.full((c.hidden_size,), float(c.layerscale_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.lambda1


class _Mlp(nn.Module):
    def __init__(self, c: Dinov2Config):
        super().__init__()
        self.act = ACTIVATIONS[c.hidden_act]
        self.fc1 = nn.Linear(c.hidden_size, c.mlp_hidden)
        self.fc2 = nn.Linear(c.mlp_hidden, c.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _SwiGLU(nn.Module):
    """``use_swiglu_ffn`` (dinov2-giant): silu(x1)·x2 with [x1 | x2] = weights_in(x)."""

    def __init__(self, c: Dinov2Config):
        super().__init__()
        self.weights_in = nn.Linear(c.hidden_size, 2 * c.mlp_hidden)
        self.weights_out = nn.Linear(c.mlp_hidden, c.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.weights_in(x).chunk(2, dim=-1)
        return self.weights_out(F.silu(x1) * x2)


class Dinov2Layer(nn.Module):
    """Pre-norm block: h += λ1·Attn(LN1 h); h += λ2·MLP(LN2 h)."""

    def __init__(self, c: Dinov2Config):
        super().__init__()
        self.norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.attention = _Attention(c)
        self.layer_scale1 = _LayerScale(c)
        self.norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = _SwiGLU(c) if c.use_swiglu_ffn else _Mlp(c)
        self.layer_scale2 = _LayerScale(c)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.layer_scale1(self.attention(self.norm1(h)))
        return h + self.layer_scale2(self.mlp(self.norm2(h)))


class _Encoder(nn.Module):
    def __init__(self, c: Dinov2Config):
        super().__init__()
        self.layer = nn.ModuleList(Dinov2Layer(c) for _ in range(c.num_hidden_layers))


class Dinov2Model(nn.Module):
    """``forward(pixel_values (B, 3, H, W)) -> last_hidden_state (B, 1 + (H/14)(W/14), D)``."""

    def __init__(self, config: Dinov2Config):
        super().__init__()
        self.config = config
        self.embeddings = Dinov2Embeddings(config)
        self.encoder = _Encoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    @classmethod
    def from_config(cls, cfg: dict | Dinov2Config) -> "Dinov2Model":
        return cls(cfg if isinstance(cfg, Dinov2Config) else Dinov2Config.from_dict(cfg))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h = self.embeddings(pixel_values)
        for layer in self.encoder.layer:
            h = layer(h)
        return self.layernorm(h)
