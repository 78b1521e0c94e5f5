"""Can a job run on these weights? Answered from headers and configs only (no torch, no footage), so
every entry point says it before a frame is decoded, with the next step in the same line."""

from __future__ import annotations

import os
from pathlib import Path

from ...contracts.errors import WeightsError
from .catalogue import default_root, find_root
from .check import check

PARTS = {  # the parts each method loads (the backbone facade loads exactly these)
    "chain": ("image_encoder_dinov2", "dinov2", "transformer", "vae", "denoiser"),
    "actionmesh": ("image_encoder_dinov2", "dinov2", "transformer", "vae", "denoiser", "autoencoder"),
}
RANDOM_REFUSED = ("the weights at {root} are random checkpoints made by make-random; pass "
                  "--allow-random-weights to run a smoke test, or get the real weights with "
                  "`python -m blender_stchain weights download`")


def random_root(size: str = "small") -> Path:
    """Where the demo keeps the random checkpoints it makes (beside the default weights root)."""
    return default_root().parent / f"weights-random-{size}"


def require(root: str | os.PathLike | None, method: str = "chain", allow_random: bool = False) -> Path:
    """The weights root when ``method`` can run on it; else one WeightsError line saying what to do."""
    return require_parts(root, PARTS[method], allow_random)


def require_parts(root: str | os.PathLike | None, needed, allow_random: bool = False) -> Path:
    """The weights root when every part in ``needed`` is there and real (or random ones are allowed)."""
    root = find_root(root)
    report = check(root)
    parts = {p.name: p for p in report.parts}
    missing = [n for n in needed if parts[n].state != "present"]
    if missing:
        state = "missing" if all(parts[n].state == "missing" for n in missing) else "incomplete or corrupt"
        raise WeightsError(f"weights {state} at {root} ({', '.join(missing)}): {_next_step()}")
    if not parts["parts fit together"].state == "present":
        raise WeightsError(f"the weights at {root} do not fit together ({parts['parts fit together'].detail}); "
                           "run `python -m blender_stchain weights check` and download the odd part again")
    if any(parts[n].is_random for n in needed) and not allow_random:
        raise WeightsError(RANDOM_REFUSED.format(root=root))
    return root


def _next_step() -> str:
    made = [p for p in (random_root("small"), random_root("tiny")) if (p / "TripoSG").is_dir()]
    smoke = (f"or run a smoke test on the random weights the demo made: --weights {made[0]} --allow-random-weights"
             if made else "or make smoke-test weights with `python -m blender_stchain weights make-random DIR` and "
             "pass --weights DIR --allow-random-weights")
    return ("get them with `python -m blender_stchain weights download` (or point --weights / STCHAIN_WEIGHTS at "
            f"them), {smoke}")
