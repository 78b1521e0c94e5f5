"""The command-line vocabulary shared by every entry point (``run``, the bpy module path,
``blender -b -P``, ``blender -c``): job options and how their values are parsed."""

from __future__ import annotations

import argparse
import json

from .errors import StchainError


def add_job_options(p: argparse.ArgumentParser) -> None:
    """The job options shared by ``run``, the bpy module path and ``blender -b -P`` (DESIGN 6)."""
    p.add_argument("--footage", required=True, help="video file, folder of images, or RGBA PNGs")
    p.add_argument("--out", required=True, help="output file")
    add_job_settings(p)


def add_job_settings(p) -> None:
    """Everything of a job but its footage and output (``batch`` takes these as every job's defaults)."""
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
