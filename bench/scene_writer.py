"""Scene-writer benchmark: 256 frames x ~20k vertices into a fresh scene (target < 2 s). JSON out.

    python bench/scene_writer.py [--frames 256] [--mode shape_keys|pc2] [--npz PATH]

The mesh is the real mushroom (20,005 vertices) from the shared data, its 16 frames repeated.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402

from blender_stchain.bl import scene_writer as sw  # noqa: E402
from tests.blender.synth import result_from_npz  # noqa: E402

SHARED = Path(os.environ.get("STCHAIN_SHARED_DIR", ROOT.parent / "shared"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--mode", default="shape_keys", choices=("shape_keys", "pc2"))
    p.add_argument("--npz", default=str(SHARED / "data" / "animated_glb" / "mushroom.npz"))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    result = result_from_npz(Path(args.npz), frames=args.frames, tracks=0)
    times, save = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            bpy.ops.wm.read_factory_settings(use_empty=True)
            t0 = time.perf_counter()
            sw.apply(result, bpy.context.scene, sw.WriteOptions(mode=args.mode, cache_dir=tmp, fps=24.0))
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scene = bpy.context.scene
        for f in range(scene.frame_start, scene.frame_start + 32):
            scene.frame_set(f)
            bpy.data.objects["4D Mesh"].evaluated_get(bpy.context.evaluated_depsgraph_get())
        playback = (time.perf_counter() - t0) / 32
        path = Path(tmp) / "bench.blend"
        t0 = time.perf_counter()
        bpy.ops.wm.save_as_mainfile(filepath=str(path))
        save = time.perf_counter() - t0
        size = path.stat().st_size
    print(json.dumps({
        "bench": "scene_writer", "mode": args.mode, "frames": args.frames, "vertices": int(result.vertices.shape[1]),
        "faces": int(result.faces.shape[0]), "write_s": sorted(times), "write_s_median": sorted(times)[len(times) // 2],
        "target_s": 2.0, "playback_s_per_frame": playback, "save_s": save, "blend_mb": size / 1e6,
        "blender": bpy.app.version_string, "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
