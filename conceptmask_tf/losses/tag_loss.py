"""Stage 1 tag loss (a departure): multi-label cross-entropy of an image's tags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from conceptmask_tf.losses._sigmoid import sigmoid_cross_entropy


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class TagLoss(keras.losses.Loss):
    """Mean sigmoid cross-entropy over the vocabulary: the image's tags are 1, others 0.

    Concepts in `ignored_rows` (zero-shot and held-out concepts, which no stage may
    train on) are left out of the mean, whether tagged or not.

    Args:
        vocabulary_size: V.
        ignored_rows: Vocabulary rows left out.
        name: Loss name.

    Call args:
        y_true: The image's tag rows, [B, T] (any numeric dtype; -1 = padding).
        y_pred: Logits float32 [B, V] (`conceptmask_tf.models.ConceptTagScores`).

    Returns (before reduction): float32 [B], the mean over the V - |ignored| concepts.
    """

    def __init__(self, vocabulary_size: int, ignored_rows: Sequence[int] = (),
                 name: str = "tag_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.vocabulary_size = int(vocabulary_size)
        self.ignored_rows = sorted(int(r) for r in ignored_rows)
        if any(not 0 <= r < self.vocabulary_size for r in self.ignored_rows):
            raise ValueError(f"ignored_rows must be in [0, {self.vocabulary_size}), got "
                             f"{self.ignored_rows}")
        if len(set(self.ignored_rows)) >= self.vocabulary_size:
            raise ValueError("every concept is ignored: nothing to train")

    def call(self, y_true, y_pred):
        rows = ops.cast(y_true, "int32")  # [B, T]
        hot = ops.one_hot(ops.maximum(rows, 0), self.vocabulary_size)  # [B, T, V]
        hot = hot * ops.cast(ops.expand_dims(rows >= 0, -1), hot.dtype)
        labels = ops.minimum(ops.sum(hot, axis=1), 1.0)  # [B, V]
        keep = [1.0] * self.vocabulary_size
        for r in self.ignored_rows:
            keep[r] = 0.0
        keep = ops.convert_to_tensor(keep, dtype=y_pred.dtype)
        entropy = sigmoid_cross_entropy(labels, y_pred)  # [B, V]
        return ops.sum(entropy * keep, axis=-1) / ops.sum(keep)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "ignored_rows": self.ignored_rows}
