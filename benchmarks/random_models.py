"""Random-weight Concept Mask models of the presets, for the benchmark scripts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def random_concept_mask(backbone: str, dim: int, vocabulary: int, *, image_size: int,
                        scales: Sequence[float], hidden_dims: Sequence[int] | None = None,
                        refinement_hidden_dim: int = 256, supervised: int = 0,
                        presence: bool = False, seed: int = 0) -> tuple[Any, np.ndarray]:
    """A `ConceptMask` with random weights (no weights can be downloaded here).

    Args:
        backbone: Stage-1 backbone name (`conceptmask_tf.models.backbone.BACKBONES`).
        dim: Word-vector dimension D.
        vocabulary: V, rows of the random word-vector matrix the stage-2 head reads.
        image_size: S of the composed model.
        scales: Attention scales.
        hidden_dims: Stage-1 fc widths (None: the model's default).
        refinement_hidden_dim: H of the stage-2 head.
        supervised: The first this many vectors are the box-supervised concepts of the
            weak-concept rule (0: the rule is off).
        presence: Presence from the stage-1 network, as the pipeline's models do.
        seed: Seeds the weights and the vectors.

    Returns:
        (model, word vectors float32 [V, D]).
    """
    import keras

    from conceptmask_tf.models import (
        ConceptMask,
        EmbeddingModel,
        RefinementModel,
        SegmentationModel,
        to_fully_convolutional,
    )

    keras.utils.set_random_seed(seed)
    vectors = np.random.default_rng(seed).normal(size=(vocabulary, dim)).astype(np.float32)
    stage1_options = {} if hidden_dims is None else {"hidden_dims": tuple(hidden_dims)}
    embedding = EmbeddingModel(backbone, dim, **stage1_options)
    refinement = RefinementModel(to_fully_convolutional(embedding), vocabulary, vectors,
                                 hidden_dim=refinement_hidden_dim, concept_input="vectors")
    segmentation = SegmentationModel(2, encoder_widths=(32, 64, 96, 128),
                                     decoder_widths=(64, 32, 16))
    model = ConceptMask(refinement, segmentation, image_size, tuple(scales),
                        supervised_vectors=vectors[:supervised] if supervised else None,
                        presence_embedding=embedding if presence else None)
    return model, vectors
