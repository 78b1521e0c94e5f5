"""``python -m blender_stchain weights check|download|make-random``.

Exit code 0 on success; on any user-facing error one ``error: ...`` line on stderr and exit code 1
(``contracts.errors``). The weights root is the positional DIR or ``--weights DIR`` (the job option).
"""

from __future__ import annotations

import argparse
import sys

from .contracts.errors import EXIT_ERROR, StchainError
from .contracts.options import OneLineParser, one_line


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m blender_stchain weights",
                      description="Check, download or generate the backbone checkpoints.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    c = sub.add_parser("check", help="report present / missing / corrupt parts and their licences")
    _root_options(c)
    d = sub.add_parser("download", help="fetch the official repositories from huggingface.co (resumable)")
    _root_options(d)
    d.add_argument("--parts", nargs="+", metavar="PART", help="TripoSG ActionMesh dinov2-large sam2.1-hiera-{tiny,small,base-plus,large} "
                        "(default: the first three and sam2.1-hiera-tiny)")
    d.add_argument("--base-url", default=None, help=argparse.SUPPRESS)
    r = sub.add_parser("make-random", help="write random-weight checkpoints in the official layouts (smoke tests)")
    r.add_argument("out", help="output weights root")
    r.add_argument("--size", choices=("tiny", "small", "full"), default="tiny")
    r.add_argument("--seed", type=int, default=0)
    return p


def _root_options(p) -> None:
    p.add_argument("dir", nargs="?", help="weights root (default: $STCHAIN_WEIGHTS or the user folder)")
    p.add_argument("--weights", dest="weights_opt", metavar="DIR", help="the same, as the job option")


def _progress():
    state = {"last": None}

    def report(name: str, done: int, total: int | None) -> None:
        pct = f"{100 * done // total}%" if total else f"{done >> 20} MiB"
        if (name, pct) != state["last"]:
            state["last"] = (name, pct)
            print(f"\r{name}: {pct}", end="", file=sys.stderr, flush=True)

    return report


def run(args: argparse.Namespace) -> int:
    from .engine import weights

    if args.command in ("check", "download"):
        if args.dir and args.weights_opt and args.dir != args.weights_opt:
            raise StchainError("give the weights root once (DIR or --weights DIR)")
        args.dir = args.dir or args.weights_opt
    if args.command == "check":
        report = weights.check(args.dir)
        print("\n".join(report.lines()))
        if report.is_random:
            print("random checkpoints: results are smoke tests only, not real reconstructions")
        if not report.ok:
            print(f"error: {report.summary()}; run `python -m blender_stchain weights download`", file=sys.stderr)
        return 0 if report.ok else EXIT_ERROR
    if args.command == "download":
        root = weights.find_root(args.dir)
        files = weights.download(root, args.parts, _progress(), base_url=args.base_url)
        print(f"\n{len(files)} file(s) downloaded into {root}; ActionMesh weights are for non-commercial use only")
        return 0
    from .engine.weights.random_checkpoints import make_random

    root = make_random(args.out, args.size, args.seed)
    _make_random_sam2(root, args.size, args.seed)
    print(f"random {args.size} checkpoints (seed {args.seed}) written to {root}: smoke tests only")
    return 0


def _make_random_sam2(root, size: str, seed: int) -> None:
    """Segmentation: the default SAM 2.1 size too, when transformers is installed."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        print("transformers is not installed: no random SAM 2.1 checkpoint (object masks off)", file=sys.stderr)
        return
    from .engine.segment.model import write_random

    write_random(root, size, seed)


def main(argv: list[str] | None = None) -> int:
    """Entry point; ``argv`` may start with the ``weights`` command word or not."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["weights"]:
        argv = argv[1:]
    try:
        return run(_parser().parse_args(argv))
    except (StchainError, OSError, ValueError) as e:
        print(one_line(e), file=sys.stderr)
        return EXIT_ERROR
