"""``python -m blender_stchain runtime plan|install|check|remove [--json]``: the same code as the
preferences' GPU Runtime buttons. Run it with the Python the runtime is for (Blender's own).

plan     which build fits this machine, why, and what it downloads and occupies (exit 1: refused)
install  the planned (or ``--build``) runtime: download, verify, activate; progress on the terminal
check    verify the active (or ``--folder``) runtime again in a fresh process
remove   delete the active (or ``--folder``) runtime; the bundled wheels run the model again
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

from ..contracts.errors import StchainError
from ..contracts.errors import FileCancel
from ..contracts.events import Done
from ..contracts.options import OneLineParser
from ..contracts.terminal import Printer
from . import plan as planning
from . import store
from .install import install
from .verify import verify

ACTIONS = ("plan", "install", "check", "remove")


def parser() -> OneLineParser:
    p = OneLineParser(prog="python -m blender_stchain runtime", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("--json", action="store_true", help="one JSON object (install: JSON event lines)")
    p.add_argument("--root", type=Path, default=None, help="the runtimes folder (Blender: the extension's)")
    p.add_argument("--build", help="choose the build by hand (a name from the table: cu130, cu128, cu126, rocm)")
    p.add_argument("--folder", help="check/remove: the runtime folder (default: the active one)")
    p.add_argument("--table", help="a runtimes.json to plan from (default: the extension's)")
    p.add_argument("--lock", help="install: the lock file (default: the build's, next to the table)")
    p.add_argument("--cancel-file", help="install: stop as soon as this file exists (Blender's Cancel)")
    return p


def make_plan(args) -> planning.Plan:
    facts = planning.probe()
    table = planning.load_table(args.table)
    if not args.build:
        return planning.choose_build(facts, table)
    chosen = [b for b in table if b.name == args.build]
    if not chosen:
        raise StchainError(f"no build {args.build!r}; the table has {', '.join(b.name for b in table)}")
    return planning.Plan("install", "chosen by hand", facts, chosen[0])


def cmd_plan(args, out) -> int:
    try:
        plan = make_plan(args)
    except StchainError as e:
        if args.json:
            out(json.dumps({"action": "refuse", "reason": str(e)}))
        raise
    current = store.active(args.root)
    if args.json:
        out(json.dumps({**plan.to_dict(), "active": current.folder if current else None}))
    else:
        for line in plan.lines():
            out(line)
        out(f"active now: {current.describe() if current else 'none (the bundled wheels)'}")
    return 0


def cmd_install(args, out) -> int:
    plan = make_plan(args)
    printer = Printer(args.json or None)
    if plan.build is None:
        printer.say(plan.lines()[0])
        return 0
    for line in plan.lines():
        printer.say(line)
    cancel = FileCancel(args.cancel_file)

    def on_signal(signum, frame):
        cancel.flag = True

    signal.signal(signal.SIGTERM, on_signal)
    # the command is the consent to download (in Blender the operator asks for Online Access first)
    runtime = install(plan.build, plan.facts, args.root, online=True, emit=printer, cancel=cancel,
                      lock=args.lock or (Path(args.table).with_name(f"runtime-lock-{plan.build.name}.txt")
                                         if args.table else None))
    printer(Done(str(runtime.path)))
    return 0


def _target(args) -> store.Runtime:
    runtime = store.read(args.root, args.folder) if args.folder else store.active(args.root)
    if runtime is None:
        raise StchainError(f"no GPU runtime {'named ' + args.folder if args.folder else 'is active'} in "
                           f"{args.root}: run `runtime plan`, then `runtime install`")
    return runtime


def cmd_check(args, out) -> int:
    runtime = _target(args)
    report = verify(runtime.site, runtime.info.get("device", "cuda"))
    if args.json:
        out(json.dumps({"folder": runtime.folder, **report}))
    else:
        out(f"{runtime.folder}: torch {report['torch']} on {report['device_name']} ({report['dtype']}), "
            f"matmul error {report['matmul_error']:.1e}, attention error {report['attention_error']:.1e}: ok")
    return 0


def cmd_remove(args, out) -> int:
    runtime = _target(args)
    now = store.remove(args.root, runtime.folder)
    after = now.describe() if now else "none (the bundled wheels)"
    out(json.dumps({"removed": runtime.folder, "active": now.folder if now else None}) if args.json
        else f"removed {runtime.folder}; active now: {after}")
    return 0


def main(argv) -> int:
    args = parser().parse_args(argv)
    args.root = args.root or store.default_root()
    args.table = args.table or os.environ.get("STCHAIN_RUNTIME_TABLE")  # an offline mirror's table (tests)
    return {"plan": cmd_plan, "install": cmd_install, "check": cmd_check, "remove": cmd_remove}[args.action](
        args, lambda line: print(line, flush=True))
