"""The backbone facade: padded decoder queries give the unpadded answers, in a bounded set of shapes."""

import pytest
import torch

from blender_stchain.engine.backbone import load_backbone, query_bucket
from blender_stchain.engine.models.capture import DecoderCrossAttention


def test_query_buckets_pad_at_most_an_eighth_with_eight_sizes_per_octave():
    sizes = range(1, 70_000)
    buckets = [query_bucket(n) for n in sizes]
    assert all(b >= n for n, b in zip(sizes, buckets))
    assert max((b - n) / n for n, b in zip(sizes, buckets) if n > 256) <= 0.125
    assert len({b for n, b in zip(sizes, buckets) if 4096 < n <= 8192}) == 8
    assert len(set(buckets)) <= 8 * 9 + 1  # 256 .. 70k: about 8 octaves; a shape per size would be 70k


@pytest.fixture(scope="module")
def backbone(tiny_weights):
    return load_backbone(tiny_weights, allow_random=True)


@pytest.mark.parametrize("count", [1, 300, 1000, 4097])
def test_padded_queries_answer_as_unpadded(backbone, count):
    gen = torch.Generator().manual_seed(count)
    latent = torch.randn(backbone.num_tokens, backbone.latent_channels, generator=gen)
    points = torch.rand(count, 3, generator=gen) * 2 - 1
    vae = backbone.models["vae"]
    with torch.no_grad():
        direct = vae.query(vae.decode_kv(latent[None]), points[None])[0, :, 0]
        with DecoderCrossAttention(vae) as cap:
            vae.decode(latent[None], points[None])
    sdf = backbone.sdf(latent)(points)
    assert sdf.shape == (count,) and torch.allclose(sdf, direct, atol=1e-5, rtol=1e-5)
    attention = backbone.decoder_attention(latent, points, chunk=97)  # small chunks: same rows
    assert attention.shape == (count, backbone.num_tokens)
    assert torch.allclose(attention, cap.result()[0], atol=1e-6)
    assert torch.allclose(attention.sum(-1), torch.ones(count), atol=1e-5)
