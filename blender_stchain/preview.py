"""``python -m blender_stchain preview RESULT --out PNG``: the result drawn over its own footage.

The mesh of a few frames is projected with the result's camera and painted (far faces first,
flat shading by the face normal) half-transparent over the footage frame, so the picture shows
both the shape and how well the camera lines up. Needs Pillow (the ``images`` extra).
"""

from __future__ import annotations

import argparse

import numpy as np

from .contracts.errors import StchainError


def project(K, world_to_camera, points):
    cam = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    uvw = cam @ K.T
    return uvw[:, :2] / np.maximum(uvw[:, 2:3], 1e-9), cam[:, 2]


def draw_frame(image, vertices, faces, K, world_to_camera, opacity=0.6):
    """Paint the mesh onto a PIL RGB image with the painter's algorithm."""
    from PIL import Image, ImageDraw

    uv, depth = project(K, world_to_camera, vertices.astype(np.float64))
    cam = vertices @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    tri = cam[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    facing = -(normal * tri.mean(1) / (np.linalg.norm(tri.mean(1), axis=1, keepdims=True) + 1e-12)).sum(1)
    visible = (facing > 0) & (depth[faces].min(1) > 1e-6)
    order = np.argsort(-depth[faces].mean(1))
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for f in order[visible[order]]:
        shade = int(60 + 180 * facing[f])
        draw.polygon([tuple(p) for p in uv[faces[f]]], fill=(shade // 3, shade // 2 + 40, shade, 255))
    alpha = np.asarray(overlay)[..., 3:4] / 255.0 * opacity
    out = np.asarray(image.convert("RGB"), np.float64) * (1 - alpha) + np.asarray(overlay)[..., :3] * alpha
    return Image.fromarray(out.round().astype(np.uint8))


def render_preview(result_path, out_path, frames=4, footage=None, height=240):
    """A strip of ``frames`` evenly spaced frames; returns the output path."""
    try:
        from PIL import Image
    except ImportError:
        raise StchainError("preview needs Pillow: pip install 'blender_stchain[images]'") from None
    from .contracts.result import load_result
    from .engine.footage import open_footage

    r = load_result(result_path)
    W, H = (int(v) for v in r.image_size)
    path = footage or r.metadata.get("footage", {}).get("path")
    first = int(r.frame_numbers[0])
    picks = np.linspace(0, r.num_frames - 1, min(frames, r.num_frames)).round().astype(int)
    tiles = []
    with open_footage(path, frames=(first, int(r.frame_numbers[-1])), max_side=None) as clip:
        for i in picks:
            rgb, _ = clip.read(int(i))
            tile = draw_frame(Image.fromarray(rgb), r.vertices[i], r.faces, r.K.astype(np.float64),
                              r.world_to_camera[i].astype(np.float64))
            tiles.append(tile.resize((max(1, round(W * height / H)), height)))
    strip = Image.new("RGB", (sum(t.width for t in tiles), height), "white")
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width
    strip.save(out_path)
    return out_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m blender_stchain preview")
    p.add_argument("result")
    p.add_argument("--out", required=True)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--footage", help="footage path (default: the one recorded in the result)")
    args = p.parse_args(argv)
    print(render_preview(args.result, args.out, args.frames, args.footage))
    return 0
