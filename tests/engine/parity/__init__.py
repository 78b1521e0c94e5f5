"""Manifest-driven parity harness.

Fixture sets: the shared reference set (``STCHAIN_FIXTURES_DIR``, default: ``fixtures/reference`` of the data folder beside the repository
next to the checkout) and every set under ``tests/fixtures/parity/`` (other configurations, made by the
same reference code; see their README). Each manifest case ``NAME`` is checked by
``check_NAME.check(case)`` in this package; shapes, configs and scalars are always read from the case,
never hard-coded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]


def fixtures_dir() -> Path:
    env = os.environ.get("STCHAIN_FIXTURES_DIR")
    return Path(env) if env else (REPO.parent / "shared" / "fixtures" / "reference")


PARITY_SETS = REPO / "tests" / "fixtures" / "parity"


def fixture_sets() -> list[Path]:
    """The shared set first, then the repository's own sets (one folder with a manifest.json each)."""
    return [fixtures_dir()] + sorted(p.parent for p in PARITY_SETS.glob("*/manifest.json"))


def manifest(root: Path | None = None) -> dict:
    """The fixture manifest; no cases when the data folder is absent (tests/conftest.py skips what needs them)."""
    path = (root or fixtures_dir()) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {"cases": []}


@dataclass
class Case:
    name: str
    dir: Path
    info: dict  # case.json
    root: Path  # the fixture set this case belongs to

    @cached_property
    def tensors(self) -> dict[str, np.ndarray]:
        from safetensors.numpy import load_file

        return load_file(str(self.dir / "case.safetensors"))

    def t(self, name: str):
        """A case tensor as a torch tensor."""
        import torch

        return torch.from_numpy(self.tensors[name].copy())

    def json(self, relpath: str) -> dict:
        return json.loads((self.dir / relpath).read_text())


def load_case(name: str, root: Path | None = None) -> Case:
    root = root or fixtures_dir()
    entry = next(c for c in manifest(root)["cases"] if c["name"] == name)
    case_json = root / entry["case_json"]
    return Case(name, case_json.parent, json.loads(case_json.read_text()), root)


def max_err(got, ref) -> float:
    got = np.asarray(got.detach().cpu() if hasattr(got, "detach") else got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"shape {got.shape} != {ref.shape}"
    return float(np.abs(got - ref).max()) if ref.size else 0.0


def assert_rel(got, ref, rel: float, label: str = "") -> float:
    """max|got-ref| <= rel * max(1, max|ref|), the fixtures' tolerance policy. Prints the error."""
    err = max_err(got, ref)
    bound = rel * max(1.0, float(np.abs(np.asarray(ref, dtype=np.float64)).max()) if np.size(ref) else 1.0)
    print(f"parity {label}: max|d|={err:.3g} (bound {bound:.3g})")
    assert err <= bound, f"{label}: max|got-ref|={err:.3g} > {bound:.3g}"
    return err


def assert_abs(got, ref, tol: float, label: str = "") -> float:
    err = max_err(got, ref)
    print(f"parity {label}: max|d|={err:.3g} (abs bound {tol:.3g})")
    assert err <= tol, f"{label}: max|got-ref|={err:.3g} > {tol:.3g}"
    return err


def assert_exact(got, ref, label: str = "") -> None:
    got = np.asarray(got.detach().cpu() if hasattr(got, "detach") else got)
    assert got.shape == np.shape(ref), f"{label}: shape {got.shape} != {np.shape(ref)}"
    bad = int((got != np.asarray(ref)).sum())
    print(f"parity {label}: {bad} differing elements (exact)")
    assert bad == 0, f"{label}: {bad} elements differ"
