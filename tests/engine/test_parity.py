"""Every case in the fixture manifest must be reproduced (pytest -m parity)."""

import importlib

import pytest

from tests.engine.parity import load_case, manifest

CASES = [c["name"] for c in manifest()["cases"]]


@pytest.mark.parity
@pytest.mark.parametrize("name", CASES)
def test_case(name):
    try:
        checker = importlib.import_module(f"tests.engine.parity.check_{name}")
    except ModuleNotFoundError as e:
        if e.name != f"tests.engine.parity.check_{name}":
            raise
        pytest.fail(f"manifest case {name!r} has no checker (tests/engine/parity/check_{name}.py)")
    checker.check(load_case(name))
