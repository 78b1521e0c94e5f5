"""``python -m blender_stchain masks``: object masks from a prompt, and their DAVIS score.

    masks --footage F [--frames A:B] --segment X,Y[@FRAME] [--segment=-X,Y] [--segment-box X0,Y0,X1,Y1[@FRAME]]
          --out DIR [--weights ROOT] [--segment-model tiny|small|base-plus|large] [--device auto]
          [--allow-random-weights]
    masks eval --pred DIR --gt DIR [--all-frames]

Also the segmentation options of ``run`` (``add_segment_options`` / ``prepare_masks``). Exit code 0 on
success; otherwise one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .contracts.errors import StchainError
from .contracts.options import WEIGHT_OPTIONS, add_options, parse_frames
from .contracts.prompts import PromptError, add_segment_options, join_negative, parse


class _UsageError(StchainError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{message} (see --help)")


def prepare_masks(args, on_event=None, cancel=None) -> tuple[str | None, tempfile.TemporaryDirectory | None]:
    """For ``run``: prompts -> a mask folder (one mask per footage frame), or the check that some mask
    source exists. Returns (masks folder or None, a temporary folder to clean up or None)."""
    from .engine.segment.run import require_mask_source, segment_footage

    prompts = parse(args.segment, args.segment_box)
    frames = parse_frames(args.frames)
    if not prompts:
        if args.save_masks:
            raise PromptError("--save-masks needs a prompt (--segment or --segment-box)")
        require_mask_source(args.footage, args.masks, prompts, frames)
        return args.masks, None
    if args.masks:
        raise PromptError("give either --masks or --segment/--segment-box, not both")
    tmp = None
    out = args.save_masks
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="stchain_masks_")
        out = str(Path(tmp.name) / "masks")
    segment_footage(args.footage, prompts, out, frames, args.weights, args.segment_model, args.device,
                    on_event, cancel, whole_clip=frames is not None, allow_random=args.allow_random_weights)
    return out, tmp


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m blender_stchain masks", description="Object masks for every frame from one prompt.")
    p.add_argument("--footage", required=True, help="video file, folder of images, or a frames folder")
    p.add_argument("--out", required=True, help="folder for the masks (one PNG per frame, footage size)")
    add_options(p, ("--frames", *WEIGHT_OPTIONS))
    add_segment_options(p, save=False)
    return p


def _eval_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m blender_stchain masks eval", description="DAVIS J&F of predicted masks.")
    p.add_argument("--pred", required=True, help="folder of predicted masks, one per frame")
    p.add_argument("--gt", required=True, help="folder of ground-truth masks, one per frame")
    p.add_argument("--all-frames", action="store_true", help="also score the first and last frames")
    return p


def _print_event(event: dict) -> None:
    if event.get("event") == "warning":
        print(f"warning: {event['message']}", file=sys.stderr)
    elif event.get("event") == "progress" and event.get("message") and sys.stderr.isatty():
        print(f"\r{100 * event['fraction']:5.1f}%  {event['message']}\033[K", end="", file=sys.stderr, flush=True)


def _clear() -> str:
    return "\r\033[K" if sys.stderr.isatty() else ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["masks"]:
        argv = argv[1:]
    try:
        if argv[:1] == ["eval"]:
            from .engine.segment.evaluate import evaluate

            args = _eval_parser().parse_args(argv[1:])
            print(evaluate(args.pred, args.gt, args.all_frames).line())
            return 0
        from .engine.segment.run import segment_footage

        args = _parser().parse_args(join_negative(argv))
        summary = segment_footage(args.footage, parse(args.segment, args.segment_box), args.out,
                                  parse_frames(args.frames), args.weights, args.segment_model, args.device,
                                  _print_event, allow_random=args.allow_random_weights)
        print(f"{_clear()}{len(summary.frames)} masks ({summary.model}) written to {summary.folder}", file=sys.stderr)
        return 0
    except (StchainError, OSError) as e:
        print(f"{_clear()}error: {e}", file=sys.stderr)
        return 1
