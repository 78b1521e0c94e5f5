"""Attention capture for the chain (docs/architecture.md 5.2-5.4, 6).

Usage: each capture is an explicit hook object and a context manager on a model::

    with AnchorSelfAttention(denoiser, layers=[0, 1, 2], anchor=0, tokens_per_frame=N, batch_rows=[1]) as cap:
        for step in steps: denoiser(...)          # accumulates over layers and calls (steps)
    A = cap.result()                              # (T, N, N): anchor-frame queries vs each frame's keys

While active, the hooked ``Attention`` modules hand their q and k (after the fused split, q/k norm
and RoPE: exactly what SDPA receives) to a probe; the layer output is still SDPA's, so it stays
bit-identical. Probes compute softmax rows in fp32, one head chunk (and query chunk) at a time, and
reduce them at once (head mean, running sums), so no full T·(N+1) x T·(N+1) map is ever built.

Row normalisation is the layer's own: a softmax over all keys of the sequence (every frame, time
tokens included). The returned slices therefore exclude the time-token columns and are not
renormalised; the chain decides how to renormalise.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch

from .layers import Attention

MAX_CHUNK_ELEMENTS = 1 << 26  # logits per probe block (256 MB in fp32)


def attention_probs(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) for q (..., R, d), k (..., S, d) -> (..., R, S) fp32.

    fp32 inputs: the logits in fp32 and scaled after the product (the parity fixtures' order). bf16/fp16
    inputs (a GPU run's compute precision): the scale folded into q and the product in that precision,
    the softmax accumulated in fp32 (half the traffic of fp32 logits, no fp32 copies of q and k)."""
    scale = q.shape[-1] ** -0.5
    if q.dtype in (torch.bfloat16, torch.float16) and q.dtype == k.dtype:
        return torch.softmax(torch.matmul(q * scale, k.transpose(-1, -2)), dim=-1, dtype=torch.float32)
    logits = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    return torch.softmax(logits, dim=-1)


def head_mean_probs(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Head-averaged probabilities for q (H, R, d), k (H, S, d) -> (R, S) fp32, one head chunk at a time."""
    h, r, _ = q.shape
    chunk = max(1, MAX_CHUNK_ELEMENTS // max(1, r * k.shape[1]))
    total = None
    for i in range(0, h, chunk):
        part = attention_probs(q[i:i + chunk], k[i:i + chunk]).sum(0)
        total = part if total is None else total.add_(part)
    return total.div_(h)


class _Capture:
    """Installs one probe per hooked attention module for the duration of a ``with`` block."""

    def __init__(self, modules: dict[int, Attention]):
        self._modules = modules
        self._installed: list[tuple[Attention, object]] = []

    def _probe(self, key: int):
        raise NotImplementedError

    def __enter__(self):
        for key, attn in self._modules.items():
            probe = self._probe(key)
            attn.probes.append(probe)
            self._installed.append((attn, probe))
        return self

    def __exit__(self, *exc):
        for attn, probe in self._installed:
            attn.probes.remove(probe)
        self._installed.clear()
        return False


class _Mean:
    """Running mean of equally shaped fp32 maps."""

    def __init__(self):
        self.total: Optional[torch.Tensor] = None
        self.count = 0

    def add(self, x: torch.Tensor, weight: int = 1) -> None:
        self.total = x.clone() if self.total is None else self.total + x
        self.count += weight

    def value(self) -> torch.Tensor:
        if self.total is None:
            raise RuntimeError("nothing was captured: run the model inside the capture block")
        return self.total / self.count


def _rows(batch_rows: Optional[Iterable[int]], batch: int) -> list[int]:
    return list(range(batch)) if batch_rows is None else list(batch_rows)


class AnchorSelfAttention(_Capture):
    """Denoiser inflated self-attention: anchor-frame queries against each frame's keys (docs/architecture.md 5.2).

    ``result()`` is (T, N, N): ``[f, i, j]`` = mean over heads, layers, calls and ``batch_rows`` of
    the probability that anchor token i attends to token j of frame f (time tokens excluded).
    """

    def __init__(self, denoiser, layers: Sequence[int], anchor: int, tokens_per_frame: int,
                 batch_rows: Optional[Iterable[int]] = None):
        not_inflated = [l for l in layers if l not in denoiser.inflated]
        if not_inflated:
            raise ValueError(f"layers {not_inflated} are not inflated: they see no other frame")
        super().__init__({l: denoiser.blocks[l].self_attention for l in layers})
        self.anchor, self.n, self.batch_rows = anchor, tokens_per_frame, batch_rows
        self._mean = _Mean()

    def _probe(self, key):
        def probe(q, k):
            n1 = self.n + 1
            frames = q.shape[2] // n1
            rows = slice(self.anchor * n1 + 1, (self.anchor + 1) * n1)
            for b in _rows(self.batch_rows, q.shape[0]):
                p = head_mean_probs(q[b, :, rows], k[b])  # (N, T·(N+1))
                self._mean.add(p.view(self.n, frames, n1)[:, :, 1:].transpose(0, 1))
        return probe

    def result(self) -> torch.Tensor:
        return self._mean.value()


class ImageCrossAttention(_Capture):
    """Denoiser cross-attention to the image tokens, for the camera (docs/architecture.md 6).

    ``result()`` is (T, N, S): per frame, latent token -> DINO token, head-averaged, mean over
    layers, calls and ``batch_rows`` (time token excluded).
    """

    def __init__(self, denoiser, layers: Sequence[int], frames: int, batch_rows: Optional[Iterable[int]] = None):
        super().__init__({l: denoiser.blocks[l].cross_attention for l in layers})
        self.frames, self.batch_rows = frames, batch_rows
        self._mean = _Mean()

    def _probe(self, key):
        def probe(q, k):
            t = self.frames
            for b in _rows(self.batch_rows, q.shape[0] // t):
                maps = [head_mean_probs(q[b * t + f, :, 1:], k[b * t + f]) for f in range(t)]
                self._mean.add(torch.stack(maps))
        return probe

    def result(self) -> torch.Tensor:
        return self._mean.value()


class DecoderCrossAttention(_Capture):
    """VAE decoder's final cross-attention: query points -> latent tokens, head-averaged (docs/architecture.md 5.3, 5.4).

    Calls are concatenated along the query axis (the decoder chunks its queries), so ``result()``
    is (B, Nq, N_tokens) in query order; queries are also chunked here by ``query_chunk``.
    """

    def __init__(self, vae, query_chunk: int = 8192):
        super().__init__({0: vae.decoder.blocks[-1].cross_attention})
        self.query_chunk = query_chunk
        self._parts: list[torch.Tensor] = []

    def _probe(self, key):
        def probe(q, k):
            per_batch = [torch.cat([head_mean_probs(qc, k[b]) for qc in q[b].split(self.query_chunk, dim=1)])
                         for b in range(q.shape[0])]
            self._parts.append(torch.stack(per_batch))
        return probe

    def result(self) -> torch.Tensor:
        if not self._parts:
            raise RuntimeError("nothing was captured: run the decoder inside the capture block")
        return torch.cat(self._parts, dim=1)


class RawProbs(_Capture):
    """Full per-head probabilities of one attention module, optionally for a slice of query rows.

    Materialises (B, H, R, S) per call: for parity checks and debugging at small sizes only.
    """

    def __init__(self, attn: Attention, rows: slice = slice(None)):
        super().__init__({0: attn})
        self.rows = rows
        self.calls: list[torch.Tensor] = []

    def _probe(self, key):
        return lambda q, k: self.calls.append(attention_probs(q[:, :, self.rows], k))
