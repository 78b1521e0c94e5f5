"""``python -m blender_stchain batch JOBS --out DIR``: many clips on Ray (local or a cluster).

Exit code 0 when every clip is done (or skipped by ``--resume``), 1 when some failed (their reasons
are in ``DIR/summary.json``), 2 when cancelled (Ctrl-C or SIGTERM), as every entry point (``contracts.errors``).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ..contracts.errors import EXIT_CANCELLED, EXIT_ERROR, EXIT_OK
from ..contracts.options import add_job_settings, job_settings, parse_frames


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m blender_stchain batch",
                                description="many clips -> one result per clip, on long-lived Ray workers")
    p.add_argument("jobs", metavar="JOBS", help="folder of clips, a quoted glob, or a .jsonl file (one JSON job "
                                                "per line: footage, masks, frames, method, preset, set, name)")
    p.add_argument("--out", required=True, help="batch folder: NAME.safetensors per clip, summary.json, events.jsonl")
    p.add_argument("--ray", default="auto",
                   help="auto (a local Ray instance) or the address of a running cluster, e.g. head:6379")
    p.add_argument("--gpus-per-job", type=float, help="GPUs per worker (default 1 when the cluster has GPUs, else 0)")
    p.add_argument("--cpus-per-job", type=int, default=1, help="CPU threads per worker (default 1)")
    p.add_argument("--workers", type=int, help="at most this many workers (default: as many as the resources hold)")
    p.add_argument("--blend", action="store_true", help="also write NAME.blend per clip (scene writer; needs bpy)")
    p.add_argument("--export", default="", metavar="FORMATS",
                   help="also write NAME.FORMAT per clip, e.g. abc,usdc,glb (Blender's exporters; needs bpy; "
                        "docs/exports.md)")
    p.add_argument("--resume", action="store_true", help="skip clips whose result exists and matches the job")
    p.add_argument("--retries", type=int, default=2, help="extra attempts of a clip whose worker died (default 2)")
    p.add_argument("--via-object-store", action="store_true",
                   help="send results back to this machine through Ray even when the workers see --out")
    p.add_argument("--object-store-mb", type=int, default=128, help="object store of a local instance (default 128)")
    add_job_settings(p.add_argument_group("every job's defaults (a JSON line may override masks, frames, method, "
                                          "preset and set)"))
    return p


def main(argv) -> int:
    args = parser().parse_args(argv)
    from .driver import BatchOptions, run_batch
    from .jobs import parse_jobs

    out = Path(args.out).expanduser().resolve()
    defaults = {"weights": args.weights, "masks": args.masks, "device": args.device, "precision": args.precision,
                "frames": parse_frames(args.frames), "method": args.method, "preset": args.preset,
                "settings": job_settings(args), "allow_random_weights": args.allow_random_weights}
    export = export_formats(args.export)
    clips = parse_jobs(args.jobs, out, defaults)
    opt = BatchOptions(out=out, ray=args.ray, gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job,
                       workers=args.workers, blend=args.blend, export=export, resume=args.resume, retries=args.retries,
                       object_store_mb=args.object_store_mb, via_store=args.via_object_store, jobs=args.jobs)
    signal.signal(signal.SIGTERM, _interrupt)
    s = run_batch(clips, opt)
    c = s["counts"]
    sys.stderr.write(f"batch: {c['done']} done, {c['skipped']} skipped, {c['failed']} failed, "
                     f"{c['cancelled']} cancelled -> {out / 'summary.json'}\n")
    return EXIT_CANCELLED if c["cancelled"] else EXIT_ERROR if c["failed"] else EXIT_OK


def export_formats(text: str) -> tuple:
    """``--export abc,usdc`` -> ("abc", "usdc"), each an extension ``export`` writes (checked before any clip runs)."""
    from ..bl.export.paths import FORMATS
    from ..contracts.errors import UsageError

    formats = tuple(f.strip().lstrip(".").lower() for f in text.split(",") if f.strip())
    for f in formats:
        if "." + f not in FORMATS:
            raise UsageError(f"--export {f}: not a format export writes; use some of "
                             f"{','.join(x.lstrip('.') for x in FORMATS)}")
    return formats


def _interrupt(signum, frame):
    raise KeyboardInterrupt
