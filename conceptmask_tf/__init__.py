"""Concept Mask in Keras 3 / TensorFlow: segment an image given any semantic concept.

    from conceptmask_tf import ConceptMaskSegmenter
    segmenter = ConceptMaskSegmenter.from_preset("work/concept_mask")
    outputs = segmenter.predict(images, concepts=["horse", "red umbrella"])
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["ConceptMaskSegmenter", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the package (e.g. by a binary parsing its flags) stays light.
    if name == "ConceptMaskSegmenter":
        from conceptmask_tf.assembly.segmenter import ConceptMaskSegmenter

        return ConceptMaskSegmenter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
