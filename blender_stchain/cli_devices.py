"""``python -m blender_stchain devices [--json] [--device D] [--precision P]``: what this machine offers.

Prints the torch build, every device found, the device and precision a run would use and why, and
each problem as one line (driver too old for the build, no kernels for the card, bf16 only emulated,
MPS settings). ``--json`` prints one object (Blender's *Detect Devices* reads it: ``items`` fills its
device list, ``lines`` is the text it shows). An explicit ``--device`` that cannot run is the one-line
error a run would give (exit 1).
"""

from __future__ import annotations

import json
from dataclasses import asdict

from .contracts.options import OneLineParser


def report(facts, device: str = "auto", precision: str = "auto") -> dict:
    """The report of ``facts`` (``engine.device.Facts``): plain data, its text in ``lines``."""
    from .engine.device import decide, diagnose

    d = decide(facts, device, precision)
    items = [["auto", "Automatic", f"Best available: {d.device}, {d.precision}" if device == "auto" else
              "Best available device"], ["cpu", "CPU", "Processor (slow)"]]
    items += [[f"cuda:{i}", c.name, f"{c.total_gib:.0f} GB, compute capability {c.capability[0]}.{c.capability[1]}"]
              for i, c in enumerate(facts.cards)]
    if facts.mps_available:
        items.append(["mps", "Apple GPU", "Metal"])
    build = f"CUDA {facts.cuda_build}" if facts.cuda_build else ("MPS" if facts.mps_built else "CPU only")
    lines = [f"torch {facts.torch_version} ({build} build)"
             + (f", NVIDIA driver {facts.driver}" if facts.driver else "")]
    lines += [f"found: {name} ({key}{': ' + info if key != 'cpu' else ''})" for key, name, info in items[1:]]
    lines.append(f"{device} -> {d.device}, {d.precision}: {d.reason}")
    problems = diagnose(facts)
    lines += problems + [w for w in d.warnings if not any(w.startswith(p) for p in problems)]
    return {"facts": asdict(facts), "device": d.device, "precision": d.precision, "reason": d.reason,
            "warnings": list(d.warnings), "problems": problems, "items": items, "lines": lines}


def main(argv) -> int:
    p = OneLineParser(prog="python -m blender_stchain devices", description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16")
    args = p.parse_args(argv)
    from .engine.device import probe

    out = report(probe(driver=True), args.device, args.precision)
    print(json.dumps(out) if args.json else "\n".join(out["lines"]))
    return 0
