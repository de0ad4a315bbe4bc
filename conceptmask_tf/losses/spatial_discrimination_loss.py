"""Stage 2 spatial discrimination loss (paper §4.2, eqs. 3-4)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from conceptmask_tf.losses._sigmoid import sigmoid_cross_entropy


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class SpatialDiscriminationLoss(keras.losses.Loss):
    """A box of concept i is a negative example for concepts j that rarely overlap i.

    Per sample, over its valid box concepts i (slots k) and the candidate concepts j:

        L = 1 / n_valid * sum_i [ sum_j gamma_ij * S_ij ] / sum_j gamma_ij
        S_ij = sum_p G_i(p) (1 - P_j(p)) xent(0, a_j(p)) / m^2

    G_i is i's box mask, a_j the refined logits of j, m^2 the pixels per map (the same
    per-pixel weight as `BoxLoss`), P_j the image's own box mask of j if j is also one
    of its box concepts (boxes are coarse: where j has a box, the box loss decides), and
    gamma from `conceptmask_tf.concepts.overlap.gamma_from_overlap`. A sample without a
    valid concept scores 0.

    Normalisation (not in the paper, which gives no formula for this loss): each box
    concept's sum over its negatives j is a gamma-weighted mean, divided by
    sum_j gamma_ij (a concept without a negative contributes 0). Without it the loss,
    and so the meaning of `weight`, grew with the number of negatives of a concept (a
    few hundred at the paper's 750 concepts). With it, weight 1 means "the negatives
    of a box concept weigh like that concept's own box loss" (`BoxLoss` is likewise a
    per-pixel mean per concept, averaged over the valid concepts).

    gamma comes as the [C, C] matrix of `OverlapMatrix` with the vocabulary row of each
    of its concepts (`OverlapMatrix.vocab_index`, -1 = not in the vocabulary, dropped),
    so a large vocabulary never needs a [V, V] matrix. The candidates j are the concepts
    that are a negative for some i (a column of gamma with an entry > 0), in the order
    of `candidate_ids`: the training step scores these vocabulary rows with the
    refinement network and passes their logits as `y_pred`.

    Args:
        gamma: float [C, C], gamma[i, j] for concept rows i, j of the overlap matrix.
        concept_rows: int [C] vocabulary row of each gamma row (-1 = none); None means
            row c is vocabulary row c.
        vocabulary_size: V; None means max(concept_rows) + 1.
        weight: Multiplies the loss.

    Call args:
        y_true: {"box_masks": float32 [B, K, m, m], "concept_valid": float32 [B, K],
                 "concept_ids": [B, K] vocabulary rows (-1 = padding)}.
        y_pred: float32 [B, J, m, m] refined logits of `candidate_ids`.

    Returns (before reduction): float32 [B].
    """

    def __init__(self, gamma: Any, concept_rows: Any = None,
                 vocabulary_size: int | None = None, weight: float = 1.0,
                 name: str = "spatial_discrimination_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        gamma = np.asarray(gamma, dtype=np.float32)
        if gamma.ndim != 2 or gamma.shape[0] != gamma.shape[1]:
            raise ValueError(f"gamma must be a square matrix, got {gamma.shape}")
        rows = (np.arange(len(gamma)) if concept_rows is None
                else np.asarray(concept_rows, dtype=np.int64))
        if rows.shape != (len(gamma),):
            raise ValueError(f"concept_rows must be [{len(gamma)}], got {rows.shape}")
        if vocabulary_size is None:
            vocabulary_size = int(rows.max()) + 1 if len(rows) else 0
        if len(rows) and rows.max() >= vocabulary_size:
            raise ValueError(f"concept row {rows.max()} >= vocabulary_size {vocabulary_size}")
        self.gamma = gamma
        self.concept_rows = rows
        self.vocabulary_size = int(vocabulary_size)
        self.weight = float(weight)

        known = np.flatnonzero(rows >= 0)
        known_gamma = gamma[np.ix_(known, known)]  # [C', C']
        candidates = np.flatnonzero((known_gamma > 0).any(axis=0))  # columns j
        self.candidate_ids = rows[known][candidates].astype(np.int32)  # [J]
        # Row of gamma restricted to the candidates, per vocabulary id; -1 for none. Each
        # row is divided by its sum over j (a gamma-weighted mean over i's negatives; the
        # other columns of the row are 0, so the sum is over all of i's negatives).
        gamma_rows = known_gamma[:, candidates]  # [C', J]
        totals = gamma_rows.sum(axis=1, keepdims=True)
        self._gamma_rows = np.divide(gamma_rows, totals, out=np.zeros_like(gamma_rows),
                                     where=totals > 0).astype(np.float32)
        self._row_of_vocab = np.full(self.vocabulary_size, -1, dtype=np.int32)
        self._row_of_vocab[rows[known]] = np.arange(len(known), dtype=np.int32)

    def call(self, y_true, y_pred):
        box_masks = y_true["box_masks"]  # [B, K, m, m]
        valid = y_true["concept_valid"]  # [B, K]
        ids = ops.cast(ops.round(y_true["concept_ids"]), "int32")  # Loss casts to float
        known_ids = ops.where(ids >= 0, ids, 0)
        rows = ops.where(ids >= 0, ops.take(self._row_of_vocab, known_ids), -1)  # [B, K]
        gamma = ops.take(self._gamma_rows, ops.maximum(rows, 0), axis=0)  # [B, K, J]
        gamma = gamma * ops.expand_dims(ops.cast(rows >= 0, "float32") * valid, -1)
        # Negative evidence for j at p: sum_i gamma_ij G_i(p).
        negative = ops.einsum("bkj,bkhw->bjhw", gamma, box_masks)  # [B, J, m, m]
        # j's own box mask where j is a box concept of the image.
        same = ops.cast(ops.expand_dims(ids, -1) == self.candidate_ids, "float32")  # [B, K, J]
        own = ops.minimum(ops.einsum("bkj,bkhw->bjhw", same * ops.expand_dims(valid, -1),
                                     box_masks), 1.0)
        xent = sigmoid_cross_entropy(ops.zeros_like(y_pred), y_pred)  # [B, J, m, m]
        pixels = ops.cast(ops.shape(y_pred)[2] * ops.shape(y_pred)[3], "float32")
        total = ops.sum(negative * (1.0 - own) * xent, axis=(1, 2, 3)) / pixels
        return self.weight * ops.divide_no_nan(total, ops.sum(valid, axis=1))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma.tolist(),
                "concept_rows": self.concept_rows.tolist(),
                "vocabulary_size": self.vocabulary_size, "weight": self.weight}
