"""``python -m blender_stchain demo``: the README's main job on a real clip.

Finds the official weights (``--weights``, ``STCHAIN_WEIGHTS`` or the user folder). When they are
not there it makes random checkpoints in the official layouts and runs the same code end to end,
labelled a smoke test everywhere: on every progress line, in the result metadata and in the scene.
Footage: ``--footage``, else a small clip rendered for the demo with the bpy module (``demo_clip``), so a
clone alone runs it. Writes ``result.safetensors``,
a ``.blend`` (when the bpy module is importable) and a preview PNG.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .contracts.options import OneLineParser
from .contracts.terminal import Printer


def find_footage(explicit, out: Path, log) -> str:
    if explicit:
        return explicit
    from .demo_clip import ensure_clip

    return str(ensure_clip(out / "clip", log))


def find_weights(explicit, size: str, log) -> tuple[Path, bool]:
    """The real weights when complete, else random ones made in the user cache (second value: random);
    the missing-weights message of every other command points at them."""
    from .engine import weights
    from .engine.weights.preflight import random_root as random_folder
    from .engine.weights.random_checkpoints import make_random

    root = weights.find_root(explicit)
    report = weights.check(root)
    if report.ok and not report.is_random:
        return root, False
    random_root = random_folder(size)
    if not weights.check(random_root).ok:
        log(f"no official weights at {root}; making random '{size}' checkpoints in {random_root}")
        make_random(random_root, size=size, seed=0)
    log("SMOKE TEST: running on random weights. Real weights: python -m blender_stchain weights download")
    return random_root, True


def main(argv=None) -> int:
    p = OneLineParser(prog="python -m blender_stchain demo")
    p.add_argument("--footage", help="default: a clip rendered for the demo (once, into OUT/clip)")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--weights")
    p.add_argument("--size", default="small", choices=["tiny", "small", "full"], help="random checkpoint size")
    p.add_argument("--device", default="auto")
    p.add_argument("--preset", default="fast", choices=["fast", "balanced", "quality"])
    p.add_argument("--method", default="chain", choices=["chain", "actionmesh"])
    p.add_argument("--json", action="store_true", help="progress as JSON lines")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    printer = Printer(args.json or None)
    log = printer.say
    footage = find_footage(args.footage, out, log)
    root, random = find_weights(args.weights, args.size, log)
    if random:
        printer.prefix = "[smoke test] "
    from .contracts.job import JobSpec
    from .engine.pipeline import run

    job = JobSpec(footage=footage, out=str(out / "result.safetensors"), weights=str(root), device=args.device,
                  preset=args.preset, method=args.method, allow_random_weights=random)
    result = run(job, on_event=printer)
    log(f"result: {result}")
    write_blend(result, out / "demo.blend", log)
    try:
        from .preview import render_preview

        log(f"preview: {render_preview(result, out / 'preview.png')}")
    except Exception as e:  # noqa: BLE001 - the preview is a convenience
        log(f"preview skipped: {e}")
    return 0


def write_blend(result, path: Path, log) -> None:
    try:
        import bpy  # noqa: F401
    except ImportError:
        log("no bpy module: skipped the .blend (pip install bpy==5.0.1)")
        return
    from .bl.headless import write_blend_file

    log(f"blender scene: {write_blend_file(result, path)}")


if __name__ == "__main__":
    sys.exit(main())
