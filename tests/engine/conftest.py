"""Random checkpoints in the official layouts, made once per test session (smoke-test weights)."""

import pytest

from blender_stchain.engine.random_weights import make_random


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    return make_random(tmp_path_factory.mktemp("weights-tiny"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def small_weights(tmp_path_factory):
    return make_random(tmp_path_factory.mktemp("weights-small"), size="small", seed=0)
