"""Command line: ``python -m blender_stchain <command>``.

- ``run``: footage -> ``result.safetensors`` without Blender (JSON progress lines on stdout).
- ``weights check|download|make-random``: manage checkpoints.
- ``demo``: the README's main job (random ``small`` weights when no real ones are found: a smoke test).
- ``preview``: a picture of a result drawn over its footage.
- ``masks``: object masks for every frame from one prompt; ``masks eval``: their DAVIS J&F (issue 12).
- options only (``--footage ... --out X.blend``): the Blender headless job through the PyPI bpy module.
Exit code 0 on success; otherwise non-zero with one clear line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from .engine.errors import StchainError


def add_job_options(p: argparse.ArgumentParser) -> None:
    """The job options shared by ``run``, the bpy module path and ``blender -b -P`` (DESIGN 6)."""
    p.add_argument("--footage", required=True, help="video file, folder of images, or RGBA PNGs")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--weights", help="weights root (default: STCHAIN_WEIGHTS or the user folder)")
    p.add_argument("--masks", help="folder of per-frame masks")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps")
    p.add_argument("--precision", default="auto", help="auto|fp32|bf16|fp16")
    p.add_argument("--frames", help="A:B, 1-based and inclusive")
    p.add_argument("--method", default="chain", choices=["chain", "actionmesh"])
    p.add_argument("--preset", default="balanced", choices=["fast", "balanced", "quality"])
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override one setting (repeatable), e.g. --set top_k=4")
    p.add_argument("--allow-random-weights", action="store_true",
                   help="accept make-random checkpoints (output is labelled a smoke test)")


def parse_frames(text: str | None):
    if not text:
        return None
    try:
        a, b = text.split(":")
        return (int(a), int(b))
    except ValueError:
        raise StchainError(f"--frames must look like A:B (1-based, inclusive), got {text!r}") from None


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise StchainError(f"--set needs NAME=VALUE, got {item!r}")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


def job_from_args(args, out: str | None = None):
    from .engine.job import JobSpec

    return JobSpec(
        footage=args.footage, out=out or args.out, weights=args.weights, masks=args.masks,
        frames=parse_frames(args.frames), method=args.method, preset=args.preset, device=args.device,
        precision=args.precision, settings=parse_overrides(args.set),
        allow_random_weights=args.allow_random_weights,
    )


def cmd_run(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m blender_stchain run", description="footage -> result.safetensors")
    add_job_options(p)
    # --- segmentation (issue 12): prompts become a mask folder first; no mask source at all stops here
    from .cli_masks import add_segment_options, join_negative, prepare_masks

    add_segment_options(p)
    args = p.parse_args(join_negative(argv))
    from .engine.worker import emit

    args.masks, tmp = prepare_masks(args, emit)
    # --- end segmentation
    from .engine.pipeline import run

    try:
        path = run(job_from_args(args), on_event=emit)
    finally:
        if tmp is not None:
            tmp.cleanup()
    emit({"event": "done", "result": str(path)})
    return 0


def cmd_weights(argv) -> int:
    from .cli_weights import main as weights_main

    return weights_main(argv)


def cmd_demo(argv) -> int:
    from .demo import main as demo_main

    return demo_main(argv)


def cmd_preview(argv) -> int:
    from .preview import main as preview_main

    return preview_main(argv)


def cmd_masks(argv) -> int:
    from .cli_masks import main as masks_main

    return masks_main(argv)


def cmd_blender(argv) -> int:
    from .bl.headless import main as headless_main

    return headless_main(argv)


COMMANDS = {"run": cmd_run, "weights": cmd_weights, "demo": cmd_demo, "preview": cmd_preview, "masks": cmd_masks}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 1
    command = COMMANDS.get(argv[0])
    try:
        if command is not None:
            return command(argv[1:])
        if argv[0].startswith("--"):
            return cmd_blender(argv)
        sys.stderr.write(f"unknown command {argv[0]!r}; try: {', '.join(COMMANDS)} or job options\n")
        return 1
    except StchainError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
