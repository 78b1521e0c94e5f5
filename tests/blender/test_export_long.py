"""Long results: 256 frames x 20k vertices written as a point cache round-trip through every format, and
exporting 1,000 frames to Alembic keeps the exporting process's memory flat."""

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
pytestmark = [pytest.mark.blender, pytest.mark.slow]

from bench.export import measure, write_result  # noqa: E402
from tests.blender.roundtrip import compare, imported  # noqa: E402
from tests.blender.test_export import (  # noqa: E402
    CAMERA_BOUND, FOV_BOUND_DEG, FPS, NPZ, VERTEX_BOUND, export, reference)


@pytest.fixture(scope="module")
def long_result(tmp_path_factory):
    return write_result(tmp_path_factory.mktemp("long") / "long.safetensors", 256, NPZ)


def test_point_cache_round_trip_256_frames(long_result, tmp_path):
    """The writer's PC2 scene (a Mesh Cache modifier) is the reference; Alembic and USD export from the same
    kind of scene, glTF from shape keys; each file imported back matches at all 256 frames. The frames
    all differ (the mesh grows each frame), so a file one frame off would fail."""
    ref, frames, size = reference(long_result, mode="pc2")
    assert [m.type for m in bpy.data.objects["4D Mesh"].modifiers] == ["MESH_CACHE"]
    first, last = ref[frames[0]].points, ref[frames[-1]].points
    assert np.abs(first - last).max() > 0.1
    outs = [tmp_path / f"long{ext}" for ext in (".abc", ".usdc", ".glb")]
    export(long_result, *outs)
    for out in outs:
        w = compare(ref, imported(out, frames, FPS, size))
        print(out.suffix, w, f"{out.stat().st_size / 1e6:.1f} MB")
        assert w.frames == 256
        assert w.vertices <= VERTEX_BOUND and w.camera <= CAMERA_BOUND and w.fov_deg <= FOV_BOUND_DEG


def test_alembic_memory_is_flat_in_clip_length(tmp_path):
    """1,000 frames (240 MB of vertices) export to Alembic within 48 MB of what 64 frames take: frames go
    from the result file through the point cache to the exporter one at a time."""
    peaks = {}
    for frames in (64, 1000):
        result = write_result(tmp_path / f"r{frames}.safetensors", frames, NPZ)
        row = measure(result, tmp_path / str(frames) / "clip.abc")
        peaks[frames] = row["peak_rss_mb"]
        result.unlink()
    print(peaks)
    assert peaks[1000] - peaks[64] < 48.0
