"""Assembly: the stage networks composed into one calibrated, saved ConceptMask.

- `stage_networks`: the trained networks of a models folder and the one rule that
  composes them (`StageNetworks.concept_mask`), and the weak-concept rule's supervised
  concepts.
- `calibration`: presence threshold / slope and the weak-concept theta, chosen on
  validation data.
- `segmenter`: `ConceptMaskSegmenter` — assemble, calibrate, save and load one folder,
  predict from concept names.

Names are imported lazily (they import TensorFlow).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConceptMaskSegmenter": "segmenter",
    "load_segmenter": "segmenter",
    "default_concepts_dir": "segmenter",
    "default_segmenter_dir": "segmenter",
    "StageNetworks": "stage_networks",
    "load_stage_networks": "stage_networks",
    "supervised_concepts": "stage_networks",
    "calibrate_model": "calibration",
}

__all__ = ["ConceptMaskSegmenter", "StageNetworks", "calibrate_model", "default_concepts_dir",
           "default_segmenter_dir", "load_segmenter", "load_stage_networks",
           "supervised_concepts"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
