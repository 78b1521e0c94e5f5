"""Peak device memory of a full-size run per stage, from the shapes alone (meta tensors, no weights).

    python bench/device_memory.py [--json] [--frames 16] [--decode-chunk N] [--attention-chunk N]

Model: a stage's peak = the weights held on the device then (each part built on the meta device and
stored as the loader stores it: Linear layers of the autocast parts in bf16, the rest fp32) + the
largest live activations of its model calls. Activations are measured, not guessed: every model call
runs at full size on meta tensors while a dispatch mode adds each new tensor storage's bytes and
subtracts them when the last tensor on it dies, keeping the peak. Autocast is emulated (the inputs of
linear/matmul ops cast to bf16 unless a scope turned autocast off, as DINOv2's does), and
``scaled_dot_product_attention`` counts as a fused kernel (its output only: flash / memory-efficient
attention on a CUDA GPU from Ampere on). Window state that lives through a window (image context, the
stage-I latents, the captured attention maps, the decoders' kv caches) is held while its frames are
decoded. Offload: only the part a call runs is held. The chain's targets: <= 12 GiB, <= 8 GiB with
offload.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_stchain.contracts.settings import preset  # noqa: E402
from blender_stchain.engine.backbone.facade import query_bucket  # noqa: E402
from blender_stchain.engine.backbone.parts import part_bytes  # noqa: E402
from blender_stchain.engine.models.capture import (  # noqa: E402
    AnchorSelfAttention,
    DecoderCrossAttention,
    ImageCrossAttention,
)
from blender_stchain.engine.weights.loading import build, storage_dtypes  # noqa: E402
from blender_stchain.engine.weights.random_checkpoints import component_config  # noqa: E402

GIB = 2**30
TOKENS, LATENT, CONTEXT = 2048, 64, 257  # latent tokens and channels; DINOv2 tokens per 224 x 224 image
LANDMARKS, CANDIDATE_VERTICES, ANCHOR_VERTICES = 512, 12_000, 20_000  # vertices a window's attention maps cover
LOW = (F.linear, torch.matmul, torch.bmm, torch.baddbmm, torch.Tensor.matmul, torch.Tensor.__matmul__, F.conv2d,
       F.scaled_dot_product_attention)


class Live(TorchDispatchMode):
    """Bytes of the tensor storages alive (made while active), and their peak."""

    def __init__(self):
        super().__init__()
        self.count, self.now, self.peak = {}, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        key = t.untyped_storage()._cdata
        if key not in self.count:
            self.count[key] = [t.untyped_storage().nbytes(), 0]
            self.now += self.count[key][0]
            self.peak = max(self.peak, self.now)
        self.count[key][1] += 1
        weakref.finalize(t, self._drop, key)

    def _drop(self, key) -> None:
        entry = self.count[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.count[key]


class Autocast(TorchFunctionMode):
    """autocast on meta tensors: matmul-class ops take ``dtype`` inputs, except inside a disabled scope;
    SDPA runs as a fused kernel (its output is all it allocates)."""

    def __init__(self, dtype):
        super().__init__()
        self.dtype, self.enabled = dtype, [True]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in LOW and self.enabled[-1]:
            cast = lambda t: t.to(self.dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
            args, kwargs = tree_map(cast, args), tree_map(cast, kwargs)
        if func is F.scaled_dot_product_attention:
            q, v = args[0], args[2]
            return torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
        return func(*args, **kwargs)

    @contextlib.contextmanager
    def scope(self, enabled=True):
        self.enabled.append(enabled)
        try:
            yield
        finally:
            self.enabled.pop()


@functools.cache
def model(name: str, dtype=torch.bfloat16):
    """Part ``name`` at full size on the meta device, in the dtypes the loader stores it in."""
    m = build(name, component_config(name, "full"), "meta").eval().requires_grad_(False)
    stored = storage_dtypes(name, m, dtype)
    for key, t in [*m.named_parameters(), *m.named_buffers()]:
        if key in stored and t.dtype != stored[key]:
            t.data = t.data.to(stored[key])
    return m


def weights(*names, dtype=torch.bfloat16) -> int:
    return sum(part_bytes(n, model(n, dtype), dtype) for n in names)


def meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, device="meta", dtype=dtype)


def measure(fn, dtype=torch.bfloat16) -> int:
    """Peak bytes of the activations ``fn`` makes (its own inputs included)."""
    ac, live = Autocast(dtype), Live()
    real = torch.autocast
    torch.autocast = lambda device_type, *a, enabled=True, **k: (
        ac.scope(enabled) if device_type == "meta" else real(device_type, *a, enabled=enabled, **k))
    try:
        with torch.no_grad(), ac, live:
            fn()
    finally:
        torch.autocast = real
    return live.peak


def window_state(frames: int) -> list:
    """What a chain window keeps while its frames are decoded: context, latents, captured maps, kv caches."""
    w = model("vae").dims.width_dec
    return [meta(frames, CONTEXT, 1024), meta(frames, TOKENS, LATENT), meta(frames, TOKENS, TOKENS),
            meta(frames, TOKENS, CONTEXT), meta(frames - 1, TOKENS, w, dtype=torch.bfloat16)]


def decoder_calls(latents: int, decode_chunk: int, attention_chunk: int, vertices: int):
    """One batched SDF call of ``decode_chunk`` queries over ``latents`` surfaces, then the attention map
    of ``vertices`` points on one of them."""
    vae = model("vae")
    kv = vae.decode_kv(meta(latents, TOKENS, LATENT))
    rows = max(1, min(latents, decode_chunk // query_bucket(1)))
    vae.query(kv[:rows], meta(rows, decode_chunk // rows, 3))
    with DecoderCrossAttention(vae, query_chunk=attention_chunk) as cap:
        vae.query(kv[:1], meta(1, query_bucket(vertices), 3))
    cap.result()


def denoiser_step(frames: int, batch: int, captured: bool):
    den = model("denoiser")
    args = (meta(batch, frames, TOKENS, LATENT), meta(batch, frames, CONTEXT, 1024), meta(batch, frames),
            meta(batch), meta(batch, frames))
    if not captured:
        return den(*args)
    rows = [batch - 1]
    with AnchorSelfAttention(den, range(6), 0, TOKENS, batch_rows=rows) as sa, \
            ImageCrossAttention(den, range(6), frames, batch_rows=rows) as xa:
        den(*args)
    return sa.result(), xa.result()


def stages(method: str, frames: int, s) -> list[tuple[str, tuple, object]]:
    """(stage, parts held without offload, the calls whose activations peak there); the first part named
    is the one the calls run (held alone with offload)."""
    dit, steps_batch = model("transformer"), 2  # stage 0 runs with guidance: batch 2
    anchor = [
        ("anchor: stage-0 DINOv2", ("image_encoder_dinov2", "transformer", "vae"),
         lambda: model("image_encoder_dinov2")(meta(1, 3, 224, 224))),
        ("anchor: DiT step (CFG)", ("transformer", "image_encoder_dinov2", "vae"),
         lambda: dit(meta(steps_batch, TOKENS, LATENT), meta(steps_batch), meta(steps_batch, CONTEXT, 1024))),
        ("anchor surface", ("vae",), lambda: decoder_calls(1, s.decode_chunk, s.attention_chunk, LANDMARKS)),
    ]
    held = ("dinov2", "denoiser", "vae") + (("autoencoder",) if method == "actionmesh" else ())
    first = lambda name: (name,) + tuple(n for n in held if n != name)  # noqa: E731 - the part a call runs first
    images = ("window: DINOv2-L images", first("dinov2"), lambda: model("dinov2")(meta(16, 3, 224, 224)))
    if method == "chain":
        b = 1 if s.stage1_guidance is None else 2
        return anchor + [images, (
            "window: stage-I steps + capture", first("denoiser"), lambda: denoiser_step(frames, b, True)), (
            "window: candidate surfaces", first("vae"),
            lambda: (window_state(frames), decoder_calls(frames - 1, s.decode_chunk, s.attention_chunk,
                                                         CANDIDATE_VERTICES)))]
    ae = model("autoencoder")
    return anchor + [images, (
        "window: stage-I steps (CFG)", first("denoiser"), lambda: denoiser_step(frames, 2, False)), (
        "window: stage II", first("autoencoder"),
        lambda: ae(meta(1, frames, TOKENS, LATENT), meta(1, frames), meta(1), meta(1, frames - 1),
                   meta(1, ANCHOR_VERTICES, 6)))]


def table(method: str, frames: int, s) -> list[dict]:
    rows = []
    for name in ("image_encoder_dinov2", "dinov2", "transformer", "vae", "denoiser", "autoencoder"):
        model(name)  # built before any measuring: a build's own tensors are weights, not activations
    for name, held, fn in stages(method, frames, s):
        act = measure(fn)
        rows.append({"stage": name, "weights": weights(*held) / GIB, "weights_offload": weights(held[0]) / GIB,
                     "activations": act / GIB})
    for r in rows:
        r["peak"], r["peak_offload"] = r["weights"] + r["activations"], r["weights_offload"] + r["activations"]
    return rows


def report(frames: int = 16, decode_chunk: int | None = None, attention_chunk: int | None = None) -> dict:
    s = preset("balanced")
    s = s.updated(**{k: v for k, v in (("decode_chunk", decode_chunk), ("attention_chunk", attention_chunk)) if v})
    chain, am = table("chain", frames, s), table("actionmesh", frames, s)
    peak = lambda rows, key: round(max(r[key] for r in rows), 2)
    return {"chain": peak(chain, "peak"), "chain_offload": peak(chain, "peak_offload"),
            "actionmesh": peak(am, "peak"), "actionmesh_offload": peak(am, "peak_offload"),
            "frames": frames, "decode_chunk": s.decode_chunk, "attention_chunk": s.attention_chunk,
            "stages": {"chain": _rounded(chain), "actionmesh": _rounded(am)}}


def _rounded(rows):
    return [{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def markdown(out: dict) -> str:
    lines = ["| method | stage | weights GiB | activations GiB | peak GiB | peak with offload GiB |",
             "| --- | --- | --- | --- | --- | --- |"]
    for method in ("chain", "actionmesh"):
        for r in out["stages"][method]:
            lines.append(f"| {method} | {r['stage']} | {r['weights']:.2f} | {r['activations']:.2f} | "
                         f"{r['peak']:.2f} | {r['peak_offload']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="one JSON line")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--decode-chunk", type=int, default=None)
    p.add_argument("--attention-chunk", type=int, default=None)
    args = p.parse_args(argv)
    out = report(args.frames, args.decode_chunk, args.attention_chunk)
    if args.json:
        print(json.dumps(out, separators=(",", ":")))
    else:
        print(markdown(out))
        print({k: v for k, v in out.items() if k != "stages"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
