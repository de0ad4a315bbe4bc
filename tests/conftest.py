"""Test-wide settings: quiet TensorFlow logs, CPU only, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# The tiny world and its trained stages, shared by every test package (session scope).
from tests.trained_world import stage1, stage2, stage3, world  # noqa: F401

# Fixtures that train models: every test using one is slow (the fast loop,
# `pytest -m "not slow"`, leaves it out; CI runs it).
TRAINED_FIXTURES = frozenset({"stage1", "stage2", "stage3", "leaky_stage1", "first_run"})


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if TRAINED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
