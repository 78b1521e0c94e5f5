"""Headless runs: ``blender -b [file] -P scripts/stchain_run.py -- OPTIONS``, ``blender -c stchain
OPTIONS`` and ``python -m blender_stchain OPTIONS`` (PyPI bpy) all end here and in the same operator.

Exit code 0 on success; otherwise one clear line on stderr and a non-zero code.
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path

from ..contracts.errors import StchainError
from ..contracts.masks import MASK_SOURCE_NAMES, mask_source
from ..contracts.options import parse_overrides

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".bmp", ".webp", ".tga")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise StchainError(f"stchain: {message} (see --help)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="stchain", description="Footage -> animated mesh + camera, saved as a .blend")
    p.add_argument("--footage", required=True, help="video file, folder of images, or RGBA PNGs")
    p.add_argument("--out", required=True, help="output .blend")
    p.add_argument("--weights", default="", help="weights folder")
    p.add_argument("--masks", default="", help="folder of mask images, one per frame")
    p.add_argument("--mask-source", default="alpha", choices=MASK_SOURCE_NAMES)
    p.add_argument("--blender-mask", default="", help="name of a Mask datablock in the opened .blend (--mask-source mask)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--frames", default=None, help="A:B, 1-based and inclusive")
    p.add_argument("--method", default="chain", choices=("chain", "actionmesh"))
    p.add_argument("--preset", default="balanced", choices=("fast", "balanced", "quality"))
    p.add_argument("--write-mode", default="auto", choices=("auto", "shape_keys", "pc2"))
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override one setting (repeatable), e.g. --set top_k=4")
    p.add_argument("--allow-random-weights", action="store_true",
                   help="accept make-random checkpoints (the result is a smoke test)")
    from ..contracts.prompts import add_segment_options  # issue 12: masks from a prompt, made by the worker's Python

    add_segment_options(p)
    return p


def frame_range(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise StchainError(f"--frames {text!r}: expected A:B, e.g. 1:16") from None
    if a < 1 or b < a:
        raise StchainError(f"--frames {text!r}: frames are 1-based and A <= B")
    return a, b


def main(argv: list[str]) -> int:
    """Run one job into the current (or a fresh) scene and save ``--out``; returns the exit code."""
    from ..contracts.prompts import join_negative

    try:
        return _run(parser().parse_args(join_negative(list(argv))))
    except StchainError as e:
        print(str(e), file=sys.stderr)
        return 2


def cli_command(argv) -> int:
    """The ``blender -c stchain`` handler."""
    return main(list(argv))


def _run(args) -> int:
    import bpy

    if not hasattr(bpy.types.Scene, "stchain"):
        raise StchainError("stchain: the extension is not registered (use blender_stchain.bl.entry.main)")
    return _generate(bpy, args)


def _generate(bpy, args) -> int:
    footage = Path(args.footage).expanduser().resolve()
    if not footage.exists():
        raise StchainError(f"--footage {footage} does not exist")
    props = bpy.context.scene.stchain
    images = footage.is_dir() or footage.suffix.lower() in IMAGE_EXTS
    props.source = "SEQUENCE" if images else "FILE"
    if images:
        props.directory = str(footage if footage.is_dir() else footage.parent)
    else:
        props.filepath = str(footage)
    frames = frame_range(args.frames)
    props.use_frame_range = frames is not None
    if frames:
        props.frame_first, props.frame_last = frames
    props.mask = mask_source(args.mask_source).blender_id
    if args.blender_mask:
        if args.blender_mask not in bpy.data.masks:
            raise StchainError(f"--blender-mask: no Mask named {args.blender_mask!r} in this .blend")
        props.mask, props.mask_datablock = "MASK", bpy.data.masks[args.blender_mask]
    props.method, props.preset, props.write_mode = args.method, args.preset, args.write_mode
    masks = args.masks
    if args.segment or args.segment_box:  # issue 12
        if masks:
            raise StchainError("give either --masks or --segment/--segment-box, not both")
        masks = _segment(bpy, args, footage)
    elif args.mask_source == "none" and not masks:
        from ..contracts.prompts import HOW

        raise StchainError(f"--mask-source none would feed whole frames to the model; {HOW}")
    try:
        outcome = bpy.ops.stchain.generate(weights=args.weights, device=args.device, masks=masks,
                                           allow_random_weights=args.allow_random_weights,
                                           settings_json=json.dumps(parse_overrides(args.set)))
    except RuntimeError:  # bpy.ops raises on an ERROR report; the message is in the status
        outcome = {"CANCELLED"}
    if "FINISHED" not in outcome:
        raise StchainError(bpy.context.window_manager.stchain_status.message or "stchain: the job failed")
    out = Path(args.out).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(out))
    print(f"saved {out}")
    return 0


def write_blend_file(result_path, blend_path) -> Path:
    """A fresh scene holding a saved result (the demo's .blend), written by the scene writer."""
    import bpy

    from ..contracts.result import load_result
    from . import scene_writer

    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = load_result(result_path)
    footage = result.metadata.get("footage", {})
    fps = footage.get("fps")
    options = scene_writer.WriteOptions(fps=float(Fraction(fps)) if fps else None, footage=_first_image(footage.get("path")),
                                        metadata={"result": str(result_path), "result_metadata": result.metadata})
    scene_writer.apply(result, bpy.context.scene, options)
    blend_path = Path(blend_path).resolve()
    bpy.ops.wm.save_as_mainfile(filepath=str(blend_path))
    return blend_path


def _first_image(path) -> str | None:
    """The background source: a video file as is, or the first image of a folder."""
    if not path:
        return None
    p = Path(path)
    if p.is_dir():
        images = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        return str(images[0]) if images else None
    return str(p)


def _segment(bpy, args, footage: Path) -> str:
    """Masks of the chosen frames by ``python -m blender_stchain masks`` in the worker's interpreter (torch
    never enters Blender); returns the folder, which pairs with the exported frames one to one."""
    import os
    import subprocess
    import tempfile

    from . import prefs

    out = args.save_masks or str(Path(tempfile.mkdtemp(prefix="stchain_masks_")) / "masks")
    python = prefs.python(bpy.context)
    cmd = [python, "-m", prefs.PACKAGE_DIR.name, "masks", "--footage", str(footage), "--out", out,
           "--device", args.device]
    cmd += [f"--segment={s}" for s in args.segment] + [f"--segment-box={b}" for b in args.segment_box]
    cmd += ["--frames", args.frames] if args.frames else []
    cmd += ["--weights", args.weights] if args.weights else []
    cmd += ["--segment-model", args.segment_model] if args.segment_model else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(prefs.pythonpath(python)))
    print(json.dumps({"stchain": "progress", "stage": "segment", "fraction": 0.0, "message": "segmenting the object"}),
          flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("warning: "):
            print(json.dumps({"stchain": "warning", "message": line[9:]}), flush=True)
    if done.returncode != 0:
        raise StchainError(lines[-1] if lines else f"segmentation failed (exit code {done.returncode})")
    return out
