"""Every case of every fixture set must be reproduced (pytest -m parity): the shared reference set and each
set under tests/fixtures/parity (other sizes, head counts, MLP ratios, token counts, seeds)."""

import importlib

import pytest

from tests.engine.parity import PARITY_SETS, fixture_sets, load_case, manifest

CASES = [pytest.param(root, c["name"], id=f"{root.name}-{c['name']}")
         for root in fixture_sets() for c in manifest(root)["cases"]]


def test_every_set_in_the_repository_is_found():
    """A set without manifest.json would silently not run."""
    folders = sorted(p for p in PARITY_SETS.iterdir() if p.is_dir()) if PARITY_SETS.is_dir() else []
    assert folders == fixture_sets()[1:]


@pytest.mark.parity
@pytest.mark.parametrize("root,name", CASES)
def test_case(root, name):
    try:
        checker = importlib.import_module(f"tests.engine.parity.check_{name}")
    except ModuleNotFoundError as e:
        if e.name != f"tests.engine.parity.check_{name}":
            raise
        pytest.fail(f"manifest case {name!r} has no checker (tests/engine/parity/check_{name}.py)")
    checker.check(load_case(name, root))
