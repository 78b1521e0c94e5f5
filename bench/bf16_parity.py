"""The parity fixtures under bf16 autocast: measured error of every checked tensor vs its fp32 bound.

    python bench/bf16_parity.py [--device cpu|cuda] [--dtype bf16|fp16]

Runs each checker of tests/engine/parity (the fp32 gates of ``pytest -m parity``) inside an autocast
scope, recording each comparison instead of asserting it, and prints JSON: per case, per tensor, the
error, the fp32 bound and their ratio. These are the numbers the README's bf16 bounds come from.
``--device cuda`` moves the fixture models and inputs there (the models' own fp32 islands still apply).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tests.engine.parity as parity  # noqa: E402
from tests.engine.parity import _load, load_case, manifest  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def recorder(rows: list, kind: str):
    def record(got, ref, bound, label=""):
        err = parity.max_err(torch.as_tensor(got).float().cpu() if torch.is_tensor(got) else got, ref)
        ref = np.asarray(ref, dtype=np.float64)
        limit = bound * max(1.0, float(np.abs(ref).max()) if ref.size else 1.0) if kind == "rel" else bound
        rows.append({"tensor": label, "error": float(f"{err:.3g}"), "fp32_bound": float(f"{limit:.3g}"),
                     "ratio": round(err / limit, 2) if limit else None})
        return err
    return record


def run_case(name: str, device: str, dtype: torch.dtype) -> dict:
    rows: list = []
    checker = importlib.import_module(f"tests.engine.parity.check_{name}")
    patches = {"assert_rel": recorder(rows, "rel"), "assert_abs": recorder(rows, "abs")}
    saved = {(m, k): getattr(m, k) for m in (parity, checker) for k in patches if hasattr(m, k)}
    load_model = _load.load_model
    for m, k in saved:
        setattr(m, k, patches[k])
    if device != "cpu" and hasattr(checker, "load_model"):
        checker.load_model = lambda cls, folder: load_model(cls, folder).to(device)
    case = load_case(name)
    if device != "cpu":  # inputs follow the model; a checker that builds its own CPU tensors reports an error
        tensor = case.t
        case.t = lambda key: tensor(key).to(device)
    try:
        with torch.autocast(torch.device(device).type, dtype=dtype), contextlib.redirect_stdout(sys.stderr):
            checker.check(case)
        status = "ran"
    except Exception as e:  # a checker that cannot run this way says why, the others still run
        status = f"{type(e).__name__}: {str(e)[:200]}"
    finally:
        for (m, k), v in saved.items():
            setattr(m, k, v)
        if hasattr(checker, "load_model"):
            checker.load_model = load_model
    worst = max((r["ratio"] for r in rows if r["ratio"] is not None), default=None)
    return {"status": status, "worst_ratio_to_fp32_bound": worst, "tensors": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    args = p.parse_args(argv)
    report = {"device": args.device, "dtype": args.dtype,
              "cases": {c["name"]: run_case(c["name"], args.device, DTYPES[args.dtype])
                        for c in manifest()["cases"]}}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
