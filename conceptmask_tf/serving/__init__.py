"""Export and serving: the SavedModel signatures, TF Serving layout and conversions.

Names are imported lazily, so importing this package does not import TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_archive": "signatures",
    "normalize_concepts": "signatures",
    "SERVING_DEFAULT": "signatures",
    "SEGMENT_CONCEPTS": "signatures",
    "CONCEPT_VECTORS": "signatures",
    "DEFAULT_MAX_IMAGE_SIDE": "signatures",
    "export_saved_model": "exporter",
    "export_segmenter": "exporter",
    "write_conversion_saved_model": "exporter",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
