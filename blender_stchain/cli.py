"""Command line: ``python -m blender_stchain <command>``.

- ``run``: footage -> ``result.safetensors`` without Blender (JSON progress lines on stdout).
- ``weights check|download|make-random``: manage checkpoints.
- ``demo``: the README's main job (random ``small`` weights when no real ones are found: a smoke test).
- ``preview``: a picture of a result drawn over its footage.
- ``masks``: object masks for every frame from one prompt; ``masks eval``: their DAVIS J&F (issue 12).
- ``batch``: many clips on long-lived Ray workers (``blender_stchain.batch``; the ``[batch]`` extra).
- ``eval BENCH`` / ``eval make-bench OUT``: quality metrics on a benchmark / build the synthetic one.
- options only (``--footage ... --out X.blend``): the Blender headless job through the PyPI bpy module.
Exit code 0 on success; otherwise non-zero with one clear line on stderr.
"""

from __future__ import annotations

import argparse
import sys

from .contracts.errors import StchainError
from .contracts.options import add_job_options, parse_frames, parse_overrides


def job_from_args(args, out: str | None = None):
    from .contracts.job import JobSpec

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


def cmd_eval(argv) -> int:
    from .evaluation.cli import main as eval_main

    return eval_main(argv)


def cmd_masks(argv) -> int:
    from .cli_masks import main as masks_main

    return masks_main(argv)


def cmd_blender(argv) -> int:
    from .bl.entry import main as headless_main

    return headless_main(argv)


def cmd_batch(argv) -> int:
    from .batch.cli import main as batch_main

    return batch_main(argv)


COMMANDS = {"run": cmd_run, "weights": cmd_weights, "demo": cmd_demo, "preview": cmd_preview, "batch": cmd_batch,
            "eval": cmd_eval, "masks": cmd_masks}


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
