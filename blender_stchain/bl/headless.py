"""Headless runs: ``blender -b [file] -P scripts/stchain_run.py -- OPTIONS``, ``blender -c stchain
OPTIONS`` and ``python -m blender_stchain OPTIONS`` (PyPI bpy) all end here and in the same operator,
with the options of ``contracts.options`` (the same as ``run``, plus the Blender-only ones).

Without a .blend the job starts from an empty scene; the result is kept beside ``--out``
(``NAME_4dmesh.safetensors``) and the scene references it there. ``--out X.abc`` (``.usd*``, ``.glb``,
``.gltf``) exports the scene's mesh and camera through Blender's exporter instead of saving a .blend
(``bl.export``). Exit codes: ``contracts.errors``.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

from ..contracts.errors import Cancelled, StchainError, exit_code
from ..contracts.masks import mask_source
from ..contracts.options import JobArgs, one_line, parse_job
from ..contracts.prompts import HOW, join_negative, segment_args
from ..contracts.events import FINAL
from ..contracts.terminal import Printer
from .export.paths import FORMATS, check_target
from .runner import RESULT_SUFFIX, remove_job_dir

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".bmp", ".webp", ".tga")


def main(argv: list[str]) -> int:
    """Run one job into the current (or an empty) scene and save ``--out``; returns the exit code
    (``contracts.errors``). Every error is one ``error: ...`` line on stderr, printed once."""
    try:
        return _run(parse_job(join_negative(list(argv)), "stchain", blender=True))
    except (StchainError, KeyboardInterrupt) as e:
        print(one_line(e if str(e) else "interrupted"), file=sys.stderr, flush=True)
        return exit_code(e)


def cli_command(argv) -> int:
    """The ``blender -c stchain`` handler."""
    return main(list(argv))


def _run(a: JobArgs) -> int:
    import bpy

    if not hasattr(bpy.types.Scene, "stchain"):
        raise StchainError("the extension is not registered (use blender_stchain.bl.entry.main)")
    return _generate(bpy, a)


def _generate(bpy, a: JobArgs) -> int:
    job = a.job
    footage = Path(job.footage).expanduser().resolve()  # parse_job checked that it exists
    if a.blender_mask and a.blender_mask not in bpy.data.masks:
        raise StchainError(f"--blender-mask: no Mask named {a.blender_mask!r} in this .blend")
    if not bpy.data.filepath:
        empty_scene(bpy)
    props = bpy.context.scene.stchain
    images = footage.is_dir() or footage.suffix.lower() in IMAGE_EXTS
    props.source = "SEQUENCE" if images else "FILE"
    if images:
        props.directory = str(footage if footage.is_dir() else footage.parent)
    else:
        props.filepath = str(footage)
    props.use_frame_range = job.frames is not None
    if job.frames:
        props.frame_first, props.frame_last = job.frames
    props.mask = mask_source(a.mask_source).blender_id
    if a.blender_mask:
        props.mask_datablock = bpy.data.masks[a.blender_mask]
    out = Path(job.out).expanduser().resolve()
    exporting = out.suffix.lower() in FORMATS  # --out X.abc/.usdc/.glb: the scene is exported, not saved
    if exporting:
        check_target(out)
    props.method, props.preset, props.write_mode = job.method, job.preset, _write_mode(a.write_mode, out)
    masks, segment_dir = job.masks or "", None
    if a.extra.get("segment") or a.extra.get("segment_box"):  # masks from a prompt
        if masks:
            raise StchainError("give either --masks or --segment/--segment-box, not both")
        masks, segment_dir = _segment(bpy, segment_args(a), footage, job.frames, Printer(a.json or None))
    elif a.mask_source == "none" and not masks:
        raise StchainError(f"--mask-source none would feed whole frames to the model; {HOW}")
    try:
        outcome = bpy.ops.stchain.generate(
            weights=job.weights or "", device=job.device, masks=masks, precision=job.precision,
            allow_random_weights=job.allow_random_weights, settings_json=json.dumps(job.settings),
            result_file=str(out.with_name(out.stem + RESULT_SUFFIX)), json_lines=a.json, quiet=True)
    except RuntimeError as e:  # the operator could not start (its poll); a failed job reports in the status
        raise StchainError(str(e).removeprefix("Error: ").strip()) from None
    finally:
        remove_job_dir(segment_dir)
    if "FINISHED" not in outcome:
        status = bpy.context.window_manager.stchain_status
        if status.message.startswith("Cancelled"):
            raise Cancelled()
        raise StchainError(status.message or "the job failed")
    if exporting:
        return _export_scene(bpy, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(out))
    print(f"saved {out}", flush=True)
    return 0


def _export_scene(bpy, out: Path) -> int:
    """``--out X.abc``: the job's mesh and camera through Blender's exporter; no .blend is saved."""
    from .export.formats import export_objects, result_objects

    scene = bpy.context.scene
    export_objects(scene, result_objects(scene), out, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    print(f"wrote {out}", flush=True)
    return 0


def _write_mode(asked: str, out: Path) -> str:
    """glTF keeps a mesh's animation only as shape keys: an export to it writes them whatever the size."""
    if FORMATS.get(out.suffix.lower()) != "gltf":
        return asked
    if asked == "pc2":
        raise StchainError("--write-mode pc2 cannot be exported to glTF (it keeps only shape keys); use .abc or .usdc")
    return "shape_keys"


def empty_scene(bpy) -> None:
    """Start from nothing (no factory cube, light or camera) when no .blend was given: the saved file then
    holds only what the job made."""
    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    for name in ("meshes", "cameras", "lights", "materials"):
        collection = getattr(bpy.data, name)
        for block in list(collection):
            if block.users == 0:
                collection.remove(block)


def write_blend_file(result_path, blend_path) -> Path:
    """A fresh scene holding a saved result (the demo's .blend), written by the scene writer."""
    import bpy

    from ..contracts.result import load_result
    from . import scene_writer

    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = load_result(result_path)
    footage = result.metadata.get("footage", {})
    fps = footage.get("fps")
    from .ops import camera_status

    metadata = {"result": str(result_path), "result_metadata": result.metadata, "mask_source": "alpha",
                "camera_status": camera_status(result.metadata)}
    options = scene_writer.WriteOptions(fps=float(Fraction(fps)) if fps else None,
                                        footage=_first_image(footage.get("path")), metadata=metadata)
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


def _segment(bpy, args, footage: Path, frames, printer) -> tuple[str, Path]:
    """Masks of the chosen frames made as the panel makes them: Blender decodes the footage into a frames
    folder (the worker needs no codec), the segmentation worker writes one mask per frame, named by its
    footage frame number. Everything goes into a job folder of the extension's user folder, never the temp
    folder. Returns (masks folder, job folder to remove when the job is over)."""
    from ..contracts.prompts import parse, resolve
    from . import footage as bl_footage
    from . import prefs
    from .runner import new_job_dir
    from .segment.jobs import segmentation_runner

    prompts = parse(args.segment, args.segment_box)
    render = bpy.context.scene.render
    src = bl_footage.probe(str(footage), fps_default=render.fps / render.fps_base)
    a, b = frames or (1, src.count)
    resolve(prompts, tuple(range(a, b + 1)), src.size)  # a wrong prompt is refused before a frame is decoded
    job_dir = new_job_dir(prefs.user_dir("jobs"))
    try:
        frames_dir = bl_footage.export(src, frames, job_dir / "footage", mask="none")
        out = Path(args.save_masks).expanduser().resolve() if args.save_masks else job_dir / "masks"
        runner = segmentation_runner(bpy.context, (src, frames, prompts, out), frames_dir, job_dir, args.weights,
                                     args.device, model=args.segment_model or None, overlay=False,
                                     allow_random=args.allow_random_weights)
        try:
            final = runner.start().wait(on_event=lambda e: None if e.get("event") in FINAL else printer(e))
        except KeyboardInterrupt:  # Ctrl+C: the worker stops before its folder goes
            runner.cancel()
            final = runner.wait()
        if final.get("event") == "cancelled" or final.get("cancelled"):
            raise Cancelled()
        if final.get("event") != "done":
            raise StchainError(final.get("message") or "segmentation failed")
    except BaseException:
        remove_job_dir(job_dir)
        raise
    return str(out), job_dir
