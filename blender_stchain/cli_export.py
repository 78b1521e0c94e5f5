"""``python -m blender_stchain export RESULT.safetensors --out FILE [--out FILE ...] [--presentation P]``.

Writes a result as Alembic (.abc), USD (.usd/.usdc/.usda) or glTF (.glb/.gltf) through Blender's own
exporters: the PyPI bpy module here, or Blender itself (``blender -b -P scripts/stchain_run.py --
export ...``). The presentation is the result's own unless ``--presentation`` asks for the other one;
either way every frame's image stays the same:

- ``camera``: the object's rigid motion (a confidence-weighted fit of every frame to the first) goes
  into the camera and the mesh only deforms (what the pipeline's "camera moves" does).
- ``object``: the camera stays at its first-frame pose and its motion goes into the mesh.
Exit codes as every command (``contracts.errors``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .bl import require_bpy
from .bl.export.paths import check_target
from .bl.export.source import CHUNK_FRAMES, ResultView, open_result
from .contracts.errors import Cancelled, StchainError
from .contracts.options import OneLineParser

PRESENTATIONS = {"object": "object_moves", "camera": "camera_moves"}


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m blender_stchain export",
                      description="a result as Alembic, USD or glTF (mesh animation and camera), via Blender")
    p.add_argument("result", metavar="RESULT", help="a result.safetensors written by run, batch or Blender")
    p.add_argument("--out", action="append", required=True, metavar="FILE",
                   help="output file, repeatable: .abc, .usd/.usdc/.usda, .glb/.gltf")
    p.add_argument("--presentation", choices=tuple(PRESENTATIONS),
                   help="object (the object moves) or camera (the camera moves); default: as the result was written")
    return p


def main(argv) -> int:
    args = parser().parse_args(list(argv))
    for out in args.out:
        check_target(out)
    view = open_result(args.result)
    require_bpy("export", load=False)  # Blender's exporters live there
    from .bl.export import export_result

    view = presented(view, PRESENTATIONS[args.presentation] if args.presentation else view.presentation)
    for path in export_result(view, args.out, warn=lambda m: print(f"warning: {m}", file=sys.stderr, flush=True)):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", flush=True)
    return 0


def presented(view: ResultView, mode: str) -> ResultView:
    """``view`` in presentation ``mode``: the same image at every frame, the motion in the mesh or the camera."""
    if mode == view.presentation:
        return view
    w2c = view.world_to_camera.astype(np.float64)
    if mode == "camera_moves":
        M = object_motion(view)
        vertex_map, w2c = _rigid_inverse(M), w2c @ M
    else:
        vertex_map = np.linalg.inv(w2c[0]) @ w2c  # M_t with w2c_0 @ M_t = w2c_t
        w2c = np.broadcast_to(w2c[0], w2c.shape).copy()
    settings = {**view.metadata.get("settings", {}), "camera_mode": mode}
    return replace(view, vertices=view.vertices.with_transforms(vertex_map), world_to_camera=w2c.astype(np.float32),
                   metadata={**view.metadata, "settings": settings})


def object_motion(view: ResultView) -> np.ndarray:
    """(T, 4, 4) rigid motion first frame -> frame t, fitted a chunk of frames at a time."""
    from .engine.camera.motion import object_motion as fit  # numpy only: no torch is loaded

    anchor = view.vertices[0].astype(np.float64)
    parts = []
    for a in range(0, view.num_frames, CHUNK_FRAMES):
        b = min(a + CHUNK_FRAMES, view.num_frames)
        parts.append(fit(anchor, view.vertices.read(a, b), view.confidence.read(a, b)).matrices)
    return np.concatenate(parts)


def _rigid_inverse(M: np.ndarray) -> np.ndarray:
    out = np.zeros_like(M)
    Rt = np.swapaxes(M[:, :3, :3], -1, -2)
    out[:, :3, :3] = Rt
    out[:, :3, 3] = -np.einsum("tij,tj->ti", Rt, M[:, :3, 3])
    out[:, 3, 3] = 1.0
    return out


def export_in_child(result: Path, formats_or_paths, cancel=lambda: False, timeout_s: float = 1800) -> list[Path]:
    """Export a finished result in a process of its own (bpy wants one; ``run`` and ``batch`` hold torch):
    formats ("abc") go beside the result (NAME.abc), paths where they say. A failure or a cancel removes
    every file of this call already written; the error is the command's own line."""
    outs = [Path(o) if Path(o).suffix else result.with_suffix("." + str(o).lstrip(".")) for o in formats_or_paths]
    cmd = [sys.executable, "-m", __package__, "export", str(result)] + [a for o in outs for a in ("--out", str(o))]
    try:
        in_child(cmd, ", ".join(o.name for o in outs), cancel, timeout_s)
    except BaseException:
        for o in outs:
            o.unlink(missing_ok=True)
            if o.suffix.lower() == ".gltf":
                o.with_suffix(".bin").unlink(missing_ok=True)
        raise
    return outs


def in_child(cmd: list[str], what: str, cancel, timeout_s: float) -> None:
    """Run ``cmd`` until it ends, ``cancel()`` or ``timeout_s``; its last stderr line is the error."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: bpy's chatter cannot fill it and stall
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + timeout_s
            while proc.poll() is None:
                if cancel() or time.monotonic() > deadline:
                    raise Cancelled() if cancel() else StchainError(f"writing {what} took over {timeout_s:.0f} s")
                time.sleep(0.1)
            if proc.returncode != 0:
                err.seek(0)
                lines = err.read().decode(errors="replace").strip().splitlines() or ["no message"]
                raise StchainError(f"writing {what} failed: {lines[-1].removeprefix('error: ')}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

