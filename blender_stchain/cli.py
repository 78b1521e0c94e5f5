"""Command line: ``python -m blender_stchain <command>``.

- ``run``: footage -> ``result.safetensors`` without Blender (a progress bar; JSON lines with ``--json``
  or when stdout is not a terminal).
- ``weights check|download|make-random``: manage checkpoints.
- ``demo``: the README's main job (random ``small`` weights when no real ones are found: a smoke test).
- ``preview``: a picture of a result drawn over its footage.
- ``masks``: object masks for every frame from one prompt; ``masks eval``: their DAVIS J&F.
- ``export RESULT --out X.abc|.usdc|.glb``: a result as Alembic, USD or glTF through Blender's exporters.
- ``runtime plan|install|check|remove``: the GPU PyTorch runtime (docs/gpu-runtime.md).
- ``devices``: the devices found, the device and precision a run would use and why, each problem one line.
- ``batch``: many clips on long-lived Ray workers (``blender_stchain.batch``; the ``[batch]`` extra).
- ``eval BENCH`` / ``eval make-bench OUT``: quality metrics on a benchmark / build the synthetic one.
- options only (``--footage ... --out X.blend``): the Blender headless job through the PyPI bpy module.
Every command shares one option vocabulary (``contracts.options``) and one way to fail: one line
``error: ...`` on stderr and the exit codes of ``contracts.errors`` (0 done, 1 error, 2 cancelled,
3 internal error).
"""

from __future__ import annotations

import sys

from .contracts.errors import EXIT_INTERNAL, StchainError, device_failure, exit_code
from .contracts.options import one_line, parse_job


def cmd_run(argv) -> int:
    from .contracts.prompts import join_negative

    a = parse_job(join_negative(argv), "python -m blender_stchain run", blender=False)
    export = _export_target(a.job)
    from .engine.weights.preflight import require  # torch-free: weights are checked before anything else

    require(a.job.weights, a.job.method, a.job.allow_random_weights)
    from .cli_masks import prepare_masks
    from .contracts.prompts import segment_args
    from .contracts.events import Done
    from .contracts.terminal import Printer
    from .engine.pipeline import run

    printer = Printer(a.json or None)
    # prompts become a mask folder first; no mask source at all stops here with one line
    a.job.masks, tmp = prepare_masks(segment_args(a), printer)
    try:
        path = run(a.job, on_event=printer)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if export is not None:  # bpy in a process of its own: this one holds torch
        from .cli_export import export_in_child

        path = export_in_child(path, [export])[0]
    printer(Done(str(path)))
    return 0


def _export_target(job):
    """``run --out X.abc`` (.usd*, .glb, .gltf): the result goes to X_4dmesh.safetensors and is exported after
    (by this environment's bpy: checked before the job, not after it)."""
    from pathlib import Path

    from .bl.export.paths import FORMATS, check_target, result_beside
    from .bl import require_bpy

    if Path(job.out).suffix.lower() not in FORMATS:
        return None
    target = check_target(job.out)
    require_bpy(f"writing {target.suffix}", load=False)
    job.out = str(result_beside(target))
    return target


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


def cmd_export(argv) -> int:
    from .cli_export import main as export_main

    return export_main(argv)


def cmd_blender(argv) -> int:
    from .bl.entry import main as headless_main

    return headless_main(argv)


def cmd_runtime(argv) -> int:
    from .runtime.cli import main as runtime_main

    return runtime_main(argv)


def cmd_devices(argv) -> int:
    from .cli_devices import main as devices_main

    return devices_main(argv)


def cmd_batch(argv) -> int:
    from .batch.cli import main as batch_main

    return batch_main(argv)


COMMANDS = {"run": cmd_run, "weights": cmd_weights, "demo": cmd_demo, "preview": cmd_preview, "batch": cmd_batch,
            "eval": cmd_eval, "masks": cmd_masks, "export": cmd_export, "runtime": cmd_runtime,
            "devices": cmd_devices}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 1
    command = COMMANDS.get(argv[0])
    if command is None and not argv[0].startswith("--"):
        sys.stderr.write(f"error: unknown command {argv[0]!r}; try: {', '.join(COMMANDS)} or job options\n")
        return 1
    return guarded(command, argv[1:]) if command is not None else guarded(cmd_blender, argv)


def guarded(fn, argv) -> int:
    """Run one command; any error is one ``error: ...`` line on stderr and its exit code (a bug: traceback, 3)."""
    try:
        return fn(argv)
    except (StchainError, KeyboardInterrupt) as e:
        sys.stderr.write(one_line(e if str(e) else "interrupted") + "\n")
        return exit_code(e)
    except Exception as e:  # noqa: BLE001 - a bug: show it whole
        known = device_failure(e)  # a device that cannot run an op: the fix, not a traceback
        if known is not None:
            sys.stderr.write(one_line(known) + "\n")
            return exit_code(known)
        import traceback

        traceback.print_exc()
        return EXIT_INTERNAL
