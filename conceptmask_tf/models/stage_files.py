"""Where a finished stage leaves its network, and how later steps load it.

A stage's model dir holds `<stage>.keras` (the stage network, no training wrapper),
`config.json` (resolved configuration and run facts, written by the training binaries:
{"stage", "config", "runtime"}), `checkpoints/<stage>-epochNNN.keras` and `logs/`
(TensorBoard).
"""

from __future__ import annotations

import os
from typing import Any

import keras

import conceptmask_tf.models  # noqa: F401  (registers the custom layers for loading)
from conceptmask_tf.base import files

CONFIG_FILE = "config.json"

MODEL_FILES = {"embedding": "embedding.keras", "refinement": "refinement.keras",
               "segmentation": "segmentation.keras", "saliency": "saliency.keras"}
_PRODUCER = {"embedding": "conceptmask-train-embedding",
             "refinement": "conceptmask-train-refinement",
             "segmentation": "conceptmask-train-segmentation",
             "saliency": "conceptmask-train-saliency"}


def model_path(model_dir: str, stage: str) -> str:
    """The final .keras file of `stage` in `model_dir`."""
    if stage not in MODEL_FILES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {tuple(MODEL_FILES)}")
    return os.path.join(model_dir, MODEL_FILES[stage])


def load_stage_model(model_dir: str, stage: str) -> keras.Model:
    """Loads the trained network of `stage` from its model dir (uncompiled).

    Raises:
        FileNotFoundError: The stage has not finished in `model_dir`.
    """
    path = model_path(model_dir, stage)
    if not files.exists(path):
        raise FileNotFoundError(f"{path} does not exist: train stage {stage!r} into "
                                f"{model_dir} first ({_PRODUCER[stage]})")
    return keras.saving.load_model(path, compile=False)


def read_stage_config(model_dir: str) -> dict[str, Any]:
    """`<model_dir>/config.json` as {"stage", "config", "runtime"}; {} when absent."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not files.exists(path):
        return {}
    return files.read_json(path)
