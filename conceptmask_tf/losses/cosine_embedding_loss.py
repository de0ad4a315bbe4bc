"""Stage 1 loss (paper §4.1): L = 1 - e.t / (|e| |t|)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

EPSILON = 1e-12


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class CosineEmbeddingLoss(keras.losses.Loss):
    """1 - cos(e, t) per sample, in [0, 2].

    Unlike `keras.losses.CosineSimilarity` (which returns -cos) the value is the
    paper's. A zero vector (e or t) has cosine 0, so loss 1.

    Call args:
        y_true: Soft-topic vectors t, float32 [B, D].
        y_pred: Embeddings e, float32 [B, D].

    Returns (before reduction): float32 [B].
    """

    def __init__(self, name: str = "cosine_embedding_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        dot = ops.sum(y_true * y_pred, axis=-1)
        norms = ops.norm(y_true, axis=-1) * ops.norm(y_pred, axis=-1)
        return 1.0 - dot / ops.maximum(norms, EPSILON)
