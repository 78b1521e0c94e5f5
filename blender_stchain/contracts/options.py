"""The command line shared by every entry point: ``run``, the bpy module path (``python -m
blender_stchain OPTIONS``), ``blender -b -P scripts/stchain_run.py -- OPTIONS``, ``blender -c stchain
OPTIONS``, the worker's job file and the operators. One table of options (``JOB_OPTIONS``), one parser
that reports every problem as one line (``UsageError``), one validation (``parse_job``) that checks
every value before a frame is read.

Adding an option is one ``Option(...)`` line in ``JOB_OPTIONS`` (plus where its value goes: the JobSpec
field of the same name, or ``JobArgs.extra`` for Blender-side choices); adding a subcommand is one
entry in ``cli.COMMANDS`` that calls ``job_parser`` / ``parse_job`` when it takes job options.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FootageError, StchainError, UsageError
from .job import DEVICES, METHODS, PRECISIONS, JobSpec
from .masks import MASK_SOURCE_NAMES
from .prompts import add_segment_options
from .settings import PRESETS, RANGES, check

OFFLOAD = RANGES["offload"]

ENGINE_MASK_SOURCES = ("alpha",)  # what `run` reads without Blender (footage alpha, or --masks files)
WRITE_MODES = ("auto", "shape_keys", "pc2")


@dataclass(frozen=True)
class Option:
    """One command-line option. ``blender``: only where a .blend is written (``run`` refuses it)."""

    flag: str
    help: str
    default: object = None
    choices: tuple = ()
    action: str = "store"  # "store" | "store_true" | "append"
    required: bool = False
    metavar: str | None = None
    blender: bool = False

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


JOB_OPTIONS: tuple[Option, ...] = (
    Option("--footage", "video file, folder of images, or RGBA PNGs", required=True, metavar="PATH"),
    Option("--out", "output: result.safetensors for `run`, a .blend otherwise; .abc/.usd/.usdc/.usda/.glb/.gltf "
           "also export the mesh and camera (docs/exports.md)", required=True, metavar="PATH"),
    Option("--weights", "weights root (default: STCHAIN_WEIGHTS or the user folder)", metavar="DIR"),
    Option("--masks", "folder of per-frame mask images (255 = object)", metavar="DIR"),
    Option("--mask-source", "how the object is separated from the background (contracts/masks.py)", "alpha",
           MASK_SOURCE_NAMES),
    Option("--blender-mask", "name of a Mask datablock in the opened .blend (--mask-source mask)",
           metavar="NAME", blender=True),
    Option("--device", "auto, cpu, cuda, cuda:N or mps", "auto"),
    Option("--precision", "numeric precision", "auto", PRECISIONS),
    Option("--offload", "keep only the running model on the device: auto (when free memory is short), none, models",
           None, OFFLOAD),
    Option("--frames", "footage frames A:B, 1-based and inclusive", metavar="A:B"),
    Option("--method", "attention chain (fast) or the ActionMesh reference", "chain", METHODS),
    Option("--preset", "speed / quality trade-off", "balanced", tuple(PRESETS)),
    Option("--write-mode", "how the animation is stored in the .blend", "auto", WRITE_MODES, blender=True),
    Option("--focal-mm", "lens focal length in mm, when known (fixes the camera's focal length)", metavar="F"),
    Option("--sensor-mm", "sensor width in mm across the footage width (default 36, full frame; with --focal-mm)",
           metavar="S"),
    Option("--set", "override one setting (repeatable), e.g. --set top_k=4", [], action="append",
           metavar="NAME=VALUE"),
    Option("--allow-random-weights", "accept make-random checkpoints (the result is a smoke test)",
           False, action="store_true"),
    Option("--json", "print progress as JSON lines (the default when stdout is not a terminal)", False,
           action="store_true"),
)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``UsageError`` line (exit code 1 like every error), never
    argparse's usage block and exit code 2."""

    def error(self, message):
        raise UsageError(f"{message} (see --help)")


WEIGHT_OPTIONS = ("--weights", "--device", "--allow-random-weights")  # every command that loads weights


def add_options(p, flags) -> None:
    """The named options of the one table, with its help, defaults and checks (``masks``, ``eval``)."""
    missing = set(flags) - {o.flag for o in JOB_OPTIONS}
    assert not missing, f"not in JOB_OPTIONS: {missing}"
    add_job_options(p, tuple(o for o in JOB_OPTIONS if o.flag in flags))


def add_job_options(p: argparse.ArgumentParser, options=JOB_OPTIONS) -> None:
    for o in options:
        kw = dict(help=o.help, default=o.default, required=o.required, dest=o.dest)
        if o.action == "store_true":
            p.add_argument(o.flag, action="store_true", **kw)
            continue
        if o.action == "append":
            kw["default"] = list(o.default or [])
        kw.update(action=o.action, metavar=o.metavar or (None if o.choices else o.dest.upper()))
        if o.choices:
            kw["choices"] = o.choices
        p.add_argument(o.flag, **kw)


JOB_SETTINGS = tuple(o for o in JOB_OPTIONS if o.flag not in ("--footage", "--out", "--json", "--mask-source")
                     and not o.blender)  # a job's values but its footage and output (defaults of many jobs)


def add_job_settings(p) -> None:
    """Everything of a job but its footage and output (``batch`` takes these as every job's defaults)."""
    add_job_options(p, JOB_SETTINGS)


def job_parser(prog: str, description: str = "") -> OneLineParser:
    p = OneLineParser(prog=prog, description=description)
    add_job_options(p)
    add_segment_options(p)  # segmentation prompts: their values land in JobArgs.extra
    return p


@dataclass
class JobArgs:
    """A parsed, fully validated command line: the job plus the Blender-side choices."""

    job: JobSpec
    mask_source: str = "alpha"
    blender_mask: str = ""
    write_mode: str = "auto"
    json: bool = False
    extra: dict = field(default_factory=dict)  # options added later that the JobSpec does not carry


def parse_job(argv, prog: str, *, blender: bool) -> JobArgs:
    """Parse and check everything (types, ranges, choices, frame range) before any file is read.

    ``blender``: the entry point writes a .blend (Blender-only options allowed)."""
    args = job_parser(prog).parse_args(list(argv))
    if not blender:
        given = [o.flag for o in JOB_OPTIONS if o.blender and getattr(args, o.dest) not in (None, "", o.default)]
        if given:
            raise UsageError(f"{given[0]} needs Blender: use `python -m blender_stchain --footage ... --out X.blend`")
        if args.mask_source not in ENGINE_MASK_SOURCES and not args.masks:
            raise UsageError(f"--mask-source {args.mask_source} needs Blender (it is keyed or rendered there): use "
                             "`python -m blender_stchain --footage ... --out X.blend`, or give --masks DIR")
    if args.blender_mask and args.mask_source != "mask":
        raise UsageError("--blender-mask needs --mask-source mask")
    job = job_from_args(args)
    if not Path(job.footage).expanduser().exists():  # a stat, before the weights check and any decoding
        raise FootageError(f"footage not found: {job.footage}")
    known = {"footage", "out", "weights", "masks", "mask_source", "blender_mask", "device", "precision", "frames",
             "method", "preset", "write_mode", "set", "allow_random_weights", "json", "offload", "focal_mm",
             "sensor_mm"}
    extra = {k: v for k, v in vars(args).items() if k not in known}
    return JobArgs(job, args.mask_source, args.blender_mask or "", args.write_mode, args.json, extra)


def job_from_args(args, out: str | None = None) -> JobSpec:
    """The JobSpec of parsed options (JobSpec validates device, method, preset and every setting)."""
    device = args.device
    if not (device in DEVICES or (device.startswith("cuda:") and device[5:].isdigit())):
        raise UsageError(f"--device {device!r} is not one of auto, cpu, cuda, cuda:N, mps")
    return JobSpec(
        footage=args.footage, out=out or args.out, weights=args.weights or None, masks=args.masks or None,
        frames=parse_frames(args.frames), method=args.method, preset=args.preset, device=device,
        precision=args.precision, settings=job_settings(args),
        allow_random_weights=args.allow_random_weights,
    )


def parse_frames(text: str | None):
    if not text:
        return None
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise UsageError(f"--frames must look like A:B, e.g. 1:16 (1-based, inclusive), got {text!r}") from None
    if a < 1 or b < a:
        raise UsageError(f"--frames {text}: frames are 1-based and A <= B, e.g. 1:16")
    return (a, b)


def parse_overrides(items: list[str]) -> dict:
    """``NAME=VALUE`` pairs -> {name: value}; each value read as JSON (numbers, lists, null) or a word,
    then checked against the setting's type and range (one line naming the setting when it does not fit)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--set needs NAME=VALUE, e.g. --set top_k=4, got {item!r}")
        if name not in RANGES:
            raise UsageError(f"--set {name}: unknown setting; see blender_stchain/contracts/settings.py")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        try:
            check(name, parsed)
        except ValueError as e:
            raise UsageError(f"--set {item}: {e}") from None
        out[name] = parsed
    return out


def job_settings(args) -> dict:
    """The settings a command line gives a job: ``--set`` pairs, ``--offload`` and the lens options."""
    offload = {"offload": args.offload} if getattr(args, "offload", None) else {}
    return {**parse_overrides(args.set), **offload, **lens_settings(args)}


def lens_settings(args) -> dict:
    """``--focal-mm F [--sensor-mm S]`` as the camera settings they stand for (checked like ``--set``)."""
    out = {}
    for dest, name in (("focal_mm", "camera_focal_mm"), ("sensor_mm", "camera_sensor_mm")):
        value = getattr(args, dest, None)
        if value is None:
            continue
        flag = "--" + dest.replace("_", "-")
        try:
            out[name] = float(value)
        except ValueError:
            raise UsageError(f"{flag} must be a number of millimetres, e.g. {flag} 35, got {value!r}") from None
        try:
            check(name, out[name])
        except ValueError as e:
            raise UsageError(f"{flag} {value}: {e}") from None
    if "camera_sensor_mm" in out and "camera_focal_mm" not in out:
        raise UsageError("--sensor-mm needs --focal-mm (the lens focal length in mm)")
    return out


def one_line(e: BaseException) -> str:
    """The message a person reads for an error: one line, with the ``error:`` prefix every entry point uses."""
    text = " ".join(str(e).split()) or type(e).__name__
    while text.startswith("error: "):  # a message passed on from a tool that printed its own line
        text = text[len("error: "):]
    return f"error: {text}"


__all__ = ["JOB_OPTIONS", "JOB_SETTINGS", "WEIGHT_OPTIONS", "JobArgs", "OneLineParser", "Option", "StchainError",
           "UsageError", "add_job_options", "add_job_settings", "add_options", "job_from_args", "job_parser",
           "job_settings", "lens_settings", "one_line", "parse_frames",
           "parse_overrides", "parse_job"]
