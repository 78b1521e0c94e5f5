"""The loaded backbone and the few model calls the pipeline makes (one place that knows the models).

Stage 0 is conditioned by TripoSG's own DINOv2 copy and stage I by facebook/dinov2-large, as in
the reference. DINOv2 runs in fp32 outside autocast (the reference does the same); the rest runs
under the runtime's autocast with the models' fp32 islands.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ...contracts.errors import NumericalError
from .. import weights
from ..weights.preflight import PARTS, require_parts
from ..device import Runtime, empty_cache, runtime, synchronize
from ..weights.loading import COMPUTE_PRECISION_PARTS
from .parts import Parts, free_bytes, host_loader, meta_part, plan_memory
from ..geometry.mesh_ops import vertex_normals
from ..models.capture import (
    AnchorSelfAttention,
    DecoderCrossAttention,
    ImageCrossAttention,
)
from ..models.layers import CrossKV, autocast_off
from . import sampling

# stage 0 (its DINOv2 copy, the DiT), the surface decoder, stage I (DINOv2-L, the denoiser); a method
# may add parts (ActionMesh mode: the stage-II autoencoder), see ``engine.methods``
CORE_PARTS = PARTS["chain"]
STAGE0_PARTS = ("image_encoder_dinov2", "transformer")  # needed only until the anchor exists


def query_bucket(n: int, minimum: int = 256) -> int:
    """``n`` rounded up to one of 8 sizes per octave (at most 12.5% padding), at least ``minimum``."""
    if n <= minimum:
        return minimum
    step = 1 << (n.bit_length() - 4)
    return -(-n // step) * step


HOST_QUERIES = 4096  # SDF queries per decoder call of a batch on a CPU (see ``BatchDecoder.sdf_many``)
HOST_CALL_ROWS = 16  # rows of HOST_QUERIES per batched call on a CPU (a progress report after each)


class ModelClock:
    """Seconds spent inside model calls (device work waited for), so each pipeline stage splits into
    model time and host time. Nested calls count once."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self._depth = device, 0.0, 0

    @contextmanager
    def __call__(self):
        self._depth += 1
        t = time.perf_counter()
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                synchronize(self.device)
                self.seconds += time.perf_counter() - t


def _clocked(fn):
    @functools.wraps(fn)
    def wrapper(self, *args, **kw):
        with self.clock():
            return fn(self, *args, **kw)
    return wrapper


@dataclass
class Stage1Run:
    """A stage-I window with attention captured on the known frame."""

    x0: torch.Tensor  # (T, N, C) predicted clean latents (known frame: its clamped latent)
    token_attention: torch.Tensor  # (T, N, N) known-frame token rows vs frame f's tokens, row-stochastic
    image_attention: torch.Tensor  # (T, N, S) tokens of frame f -> its image tokens


@dataclass
class FrameDecoder:
    """One frame's latent: its decoder keys and values, shared by the SDF queries and the captured attention."""

    backbone: Backbone
    kv: CrossKV  # its decoder cross-attention's keys and values

    @property
    def clock(self) -> ModelClock:
        return self.backbone.clock

    @_clocked
    @torch.no_grad()
    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """points (M, 3) -> SDF proxy (M,), positive inside (the VAE's logits)."""
        vae = self.backbone.models["vae"]
        return vae.query(self.kv, _queries(points, self.backbone.device))[0, : len(points), 0].float()

    @_clocked
    @torch.no_grad()
    def attention(self, points: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """The final cross-attention of ``points`` against the tokens: (M, N), head-averaged, ``chunk``
        queries at a time."""
        vae = self.backbone.models["vae"]
        with DecoderCrossAttention(vae, query_chunk=chunk) as cap:
            vae.query(self.kv, _queries(points, self.backbone.device))
        return cap.result()[0, : len(points)].float()


@dataclass
class BatchDecoder:
    """Several latents' decoder keys and values from one ``decode_kv`` call: their SDF queries batched
    (``sdf_many``, for ``surface.extract_many``) and each one's own decoder (``frame``)."""

    backbone: Backbone
    kv: CrossKV  # (B, H, N, d) keys and values, one row per latent

    @property
    def clock(self) -> ModelClock:
        return self.backbone.clock

    @_clocked
    @torch.no_grad()
    def sdf_many(self, surfaces: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Row r of points (R, M, 3) against latent ``surfaces[r]`` -> SDF proxy (R, M), positive inside.
        One call on an accelerator; on a CPU row by row in calls of ``HOST_QUERIES`` (there a query's
        cost grows with the call, as its activations leave the caches, and rows of different latents
        gain nothing from a batch: 2.0 vs 3.3 us a query at tiny size, 26 vs 33 at small)."""
        if self.backbone.device.type != "cpu":
            return self._query(self.kv[surfaces.to(self.kv.device)], points)
        return torch.stack([torch.cat([self._query(self.kv[s : s + 1], part[None])[0]
                                       for part in row.split(HOST_QUERIES)])
                            for s, row in zip(surfaces.tolist(), points)])

    def call_queries(self, limit: int) -> int:
        """Queries per ``sdf_many`` call: ``limit`` (the memory knob) on an accelerator; on a CPU, which
        gains nothing from larger calls, at most ``HOST_CALL_ROWS`` rows, so a cancel is seen as often
        as when each frame was decoded alone."""
        return limit if self.backbone.device.type != "cpu" else min(limit, HOST_CALL_ROWS * HOST_QUERIES)

    def _query(self, kv: CrossKV, points: torch.Tensor) -> torch.Tensor:
        """points (R, M, 3) against kv rows (R) -> (R, M)."""
        vae = self.backbone.models["vae"]
        return vae.query(kv, _queries(points, self.backbone.device))[:, : points.shape[1], 0].float()

    def frame(self, index: int) -> FrameDecoder:
        """The decoder of latent ``index`` alone (a view of its keys and values): its attention maps."""
        return FrameDecoder(self.backbone, self.kv[index : index + 1])


def _queries(points: torch.Tensor, device) -> torch.Tensor:
    """Query points (M, 3) or rows (R, M, 3) -> (R, bucket(M), 3) on the device, zero-padded: queries are
    independent, and a few sizes (not one per surface) keep the kernel caches bounded (oneDNN compiles
    and keeps a GELU kernel per shape: one query size per surface would add ~85 KB resident per frame
    of a long clip)."""
    rows = points if points.dim() == 3 else points[None]
    padded = rows.new_zeros(rows.shape[0], query_bucket(rows.shape[1]), 3)
    padded[:, : rows.shape[1]] = rows
    return padded.to(device, torch.float32)


@dataclass
class Backbone:
    rt: Runtime
    models: dict
    num_tokens: int
    latent_channels: int
    identities: list = field(default_factory=list)
    patch_grid: int = 16  # 224 / 14
    image_px: int = 224
    image_prefix_tokens: int = 1  # CLS

    def __post_init__(self):
        self.clock = ModelClock(self.rt.device)
        if not isinstance(self.models, Parts):  # models made elsewhere (benches): all loaded, on the device
            self.models = Parts(self.rt.device, {}, loaded=self.models)

    @property
    def device(self) -> torch.device:
        return self.rt.device

    @property
    def precision(self) -> str:
        return str(self.rt.dtype).replace("torch.", "")

    @property
    def is_random(self) -> bool:
        return any(i["random"] for i in self.identities)

    def autocast(self):
        return self.rt.autocast()

    @_clocked
    @torch.no_grad()
    def encode_images(self, pixel_values: torch.Tensor, encoder: str = "dinov2", chunk: int = 16) -> torch.Tensor:
        """(T, 3, 224, 224) -> last_hidden_state (T, 1 + patches, D), fp32."""
        model = self.models[encoder]
        with autocast_off(self.device):
            out = [model(p.to(self.device, torch.float32)) for p in pixel_values.split(chunk)]
        return torch.cat(out).float()

    @_clocked
    def sample_anchor(self, pixel_values: torch.Tensor, settings, steps: int, progress=None) -> torch.Tensor:
        """Stage 0 on one frame -> the anchor latent (N, C)."""
        context = self.encode_images(pixel_values, "image_encoder_dinov2")
        noise = sampling.stage0_noise(self.num_tokens, self.latent_channels, settings.anchor_seed)
        out = sampling.sample_stage0(self.models["transformer"], context, noise, steps,
                                     settings.anchor_guidance, on_step=progress)
        return out.latents[0].float()

    def plan_memory(self, settings, method: str):
        """(settings, notes) fitted to the device's free memory: offload on or off, the decode chunk."""
        return plan_memory(self.models, self.rt.dtype, method, settings, free_bytes(self.device), STAGE0_PARTS)

    def release(self, parts=STAGE0_PARTS) -> None:
        """Drop models no later stage needs (the DiT after the anchor: ~6 GB at full size in fp32)."""
        for name in parts:
            self.models.pop(name, None)
        empty_cache(self.device)

    @_clocked
    @torch.no_grad()
    def stage2(self, latents: torch.Tensor, known_index: int, vertices: torch.Tensor, faces: torch.Tensor):
        """Stage-II autoencoder: (T, N, C) latents + the known frame's mesh -> (T, V, 3) positions."""
        ae = self.models["autoencoder"]
        T, dev = latents.shape[0], self.device
        framestep = torch.arange(T, dtype=torch.float32, device=dev)[None]
        alphas = framestep / max(T - 1, 1)
        targets = [f for f in range(T) if f != known_index]
        v = vertices.to(dev, torch.float32)
        query = torch.cat([v, vertex_normals(v, faces.to(dev).long())], dim=-1)[None]
        out = v.expand(T, -1, -1).clone()
        if targets:
            pred = ae(latent=latents[None].to(dev), framestep=framestep, source_alpha=alphas[:, known_index],
                      target_alphas=alphas[:, targets], query=query)
            out[targets] = pred[0].float().clamp(-1.0, 1.0)
        return out

    def decoder(self, latent: torch.Tensor) -> FrameDecoder:
        """The VAE decoder of one latent (its cross-attention keys and values computed once): SDF values
        and attention maps."""
        with torch.no_grad(), self.clock():
            return FrameDecoder(self, self.models["vae"].decode_cross_kv(latent[None].to(self.device)))

    def decoders(self, latents: torch.Tensor) -> BatchDecoder:
        """The VAE decoder of several latents (B, N, C), their keys and values computed once."""
        with torch.no_grad(), self.clock():
            return BatchDecoder(self, self.models["vae"].decode_cross_kv(latents.to(self.device)))

    def sdf(self, latent: torch.Tensor):
        """points (M, 3) -> SDF proxy (M,), positive inside (the VAE's logits)."""
        return self.decoder(latent).sdf

    def decoder_attention(self, latent: torch.Tensor, points: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """The VAE decoder's final cross-attention of ``points`` against ``latent``: (M, N), head-averaged."""
        return self.decoder(latent).attention(points, chunk)

    @_clocked
    def stage1(self, context, known_index: int, known_latent, steps: int, guidance, seed: int,
               capture_layers=(0,), capture_from: int = 0, progress=None) -> Stage1Run:
        """Stage I on one window with the known frame clamped; captures ``capture_layers`` (those the
        denoiser has) during steps >= ``capture_from``."""
        den = self.models["denoiser"]
        T = context.shape[0]
        noise = sampling.window_noise(T, self.num_tokens, self.latent_channels, seed)
        known = torch.zeros(T, dtype=torch.bool)
        known[known_index] = True
        init = noise.to(self.device)  # the known latent stays where it is (no host round trip)
        init[known_index] = known_latent.to(self.device, torch.float32)
        layers = [layer for layer in capture_layers if layer < len(den.blocks)] or [0]
        rows = [1] if guidance is not None else [0]  # the fully conditioned CFG branch
        sa = AnchorSelfAttention(den, layers, known_index, self.num_tokens, batch_rows=rows)
        xa = ImageCrossAttention(den, layers, T, batch_rows=rows)

        def hook(window, step):
            return _Both(sa, xa) if step >= capture_from else _Null()

        res = sampling.denoise_window(den, context, torch.arange(T, dtype=torch.float32), known, init, steps,
                                      guidance, on_step=progress, step_hook=hook)
        if not torch.isfinite(res.x0).all():
            raise NumericalError("NaN or Inf in the output of the stage-I denoiser; try --precision fp32")
        A = sa.result().float()
        A = A / A.sum(-1, keepdim=True).clamp_min(1e-12)
        return Stage1Run(res.x0.float(), A, xa.result().float())


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Both:
    """Both captures active for one model call (they accumulate across calls)."""

    def __init__(self, *caps):
        self.caps = caps

    def __enter__(self):
        for c in self.caps:
            c.__enter__()
        return self

    def __exit__(self, *exc):
        for c in reversed(self.caps):
            c.__exit__(*exc)
        return False


def store_in_compute_precision(models: dict, dtype: torch.dtype) -> None:
    """Linear weights of the autocast-only parts held in ``dtype`` (bf16: half the memory, and no
    per-call autocast copies); norms, embeddings and fp32 runs stay as loaded."""
    if dtype == torch.float32:
        return
    for name in COMPUTE_PRECISION_PARTS:
        for module in models[name].modules() if name in models else ():
            if isinstance(module, torch.nn.Linear):
                module.to(dtype)


def load_backbone(root, device="auto", precision="auto", parts=CORE_PARTS, allow_random=False) -> Backbone:
    """The backbone of ``parts`` (a method's, see ``engine.methods``) from the weights root: checked now
    (headers, keys, shapes), each part loaded strictly when first used (``backbone.parts``), without
    gradient state; random ones refused unless allowed."""
    root = require_parts(root, parts, allow_random)
    rt = runtime(device, precision)
    identities = [weights.weight_identity(root, name) for name in parts]
    loaders = {name: host_loader(root, name, rt.dtype) for name in parts}
    models = Parts(rt.device, loaders, specs=functools.partial(meta_part, str(root)))
    cfg = weights.read_config(weights.component_folder(root, "denoiser"))
    return Backbone(rt, models, int(cfg.get("num_tokens_nominal", 2048)), int(cfg["in_channels"]), identities)
