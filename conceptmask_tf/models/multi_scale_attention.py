"""Refined attention of concepts at each attention scale: the one implementation.

The composed model (`ConceptMask`), stage-3 training (`training.segmentation`) and the
evaluation's attention maps all take stage 2's attention through `refine_image` and, for
several scales, `MultiScaleAttention`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras import ops

from conceptmask_tf.models.resize_images import ResizeImages
from conceptmask_tf.models.tensor_ops import channels_to_concepts


def refine_image(refinement: Any, image: Any, concept_vectors: Any,
                 training: bool = False) -> dict[str, Any]:
    """Stage 2 on one image batch for any word vectors.

    Works on symbolic tensors (to compose models) and eagerly.

    Args:
        refinement: A `RefinementModel` (either `concept_input`).
        image: float32 [B, H, W, 3] in [0, 255].
        concept_vectors: float32 [B, K, D].
        training: Passed to the embedding network.

    Returns:
        {"logits", "attention" (sigmoid of the logits), "coarse" (the fine-tuned
        embedding's coarse maps): [B, K, h, w]; "embedding_map": [B, h, w, D];
        "embedding": [B, D] the pooled image embedding}.
    """
    embedded = refinement.embedding(image, training=training)
    logits, coarse = refinement.refine(embedded["embedding_map"], concept_vectors)
    return {"logits": channels_to_concepts(logits),
            "attention": channels_to_concepts(ops.sigmoid(logits)),
            "coarse": channels_to_concepts(coarse),
            "embedding_map": embedded["embedding_map"], "embedding": embedded["embedding"]}


class MultiScaleAttention:
    """Stage 2's attention of the same concepts on the image at each attention scale.

    The paper's segmentation network sees the refined attention from inputs of 300 and
    700 px (§4.3); here the image is resized to round(s * S) for each scale s (layers
    "resize_scale_<i>", bilinear) and stage 2 runs on each (`refine_image`).

    Args:
        refinement: A `RefinementModel`.
        image_size: S.
        scales: Input scales relative to S, e.g. (1.0, 2.0).
    """

    def __init__(self, refinement: Any, image_size: int, scales: Sequence[float]) -> None:
        self.refinement = refinement
        self.image_size = int(image_size)
        self.scales = tuple(float(s) for s in scales)
        self.resizers = [ResizeImages(round(s * self.image_size), name=f"resize_scale_{i}")
                         for i, s in enumerate(self.scales)]

    @property
    def input_sides(self) -> list[int]:
        """The side of the image stage 2 sees at each scale."""
        return [resize.size for resize in self.resizers]

    def at_scale(self, index: int, image: Any, concept_vectors: Any,
                 training: bool = False) -> dict[str, Any]:
        """`refine_image` on the image resized for scale `index`, plus "image" (resized)."""
        scaled = self.resizers[index](image)
        return {"image": scaled, **refine_image(self.refinement, scaled, concept_vectors,
                                                training)}

    def __call__(self, image: Any, concept_vectors: Any, training: bool = False) -> list[Any]:
        """The attention [B, K, h_a, w_a] of the concepts at each scale."""
        return [self.at_scale(i, image, concept_vectors, training)["attention"]
                for i in range(len(self.scales))]
