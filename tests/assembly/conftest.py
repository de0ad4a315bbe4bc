"""The serving tests' tiny work dir and its assembled model (`tests/serving/conftest.py`)."""

from tests.serving.conftest import tiny_model, tiny_segmenter, tiny_work_dir  # noqa: F401
