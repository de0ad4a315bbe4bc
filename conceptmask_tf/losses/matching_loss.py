"""Stage 2 matching loss (paper eq. 2, second term): learning without forgetting.

Stage 2 fine-tunes the embedding network on box concepts only; the matching loss keeps
the refined maps of the other vocabulary concepts close to what the frozen stage-1
network said. For each image:

1. `select_matching_concepts`: the top-N vocabulary concepts by the peak (max over
   locations) of their ORIGINAL coarse map alpha0 (frozen stage-1 network in
   fully-convolutional form), excluding the image's own box concepts (they have real
   supervision). The peak, not the mean, so a concept present in a small region (a
   part) still ranks high.
2. `binarize_attention`: B(alpha0_k) = 1 where the map, min-max normalised per map, is
   >= threshold (0.5 by default), i.e. the concept's relatively most attended region;
   with min_max=False ("raw", `--matching_binarize=raw`) the threshold applies to the
   raw (cosine) value.
3. `MatchingLoss`: c * sum over the N concepts of the pixel-mean sigmoid cross-entropy
   between the refined logits alpha_k and B(alpha0_k).

Binarisation: the paper only says the original maps are "binarized with a threshold".
Min-max (the default, and what the world preset was tuned with) thresholds each map
relative to its own range: the coarse maps are cosines whose level differs between
concepts and images (stage 1 fits only the direction of the embedding, and word vectors
of rare and frequent concepts differ), so one raw threshold fits some concepts' maps and
leaves others all 0 or all 1, while the min-max target keeps every map's shape. Its cost:
every top-N concept gets a positive region, absent ones included (a constant map is the
only all-0 target). "raw" is the literal reading: a pixel is positive where the raw
cosine is >= the threshold, so a concept whose map stays below it everywhere gets an
all-0 target (it is taught as absent). With "raw", choose the threshold on the cosine
scale of the stage-1 maps.

Scale: the paper's c = 1e-6 with N = 800 goes with its (unstated) loss normalisation.
Here each term is a pixel mean (like `BoxLoss`), so with c = 1e-6 the matching term
is ~1e-3 of the box term; choose c per setup (e.g. c ~ 1 / N to weigh it like one
concept).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from conceptmask_tf.losses._sigmoid import sigmoid_cross_entropy

SCORES = ("max", "mean")


def select_matching_concepts(original_maps, exclude_ids, top_n: int, score: str = "max"):
    """The N most activated vocabulary concepts per image, other than `exclude_ids`.

    Args:
        original_maps: float32 [B, h, w, V] coarse maps of all V concepts from the
            frozen stage-1 network.
        exclude_ids: int [B, K] the image's own concepts (-1 = padding, ignored).
        top_n: N; more than V is cut to V.
        score: "max" (peak over locations) or "mean" activation.

    Returns:
        (ids int32 [B, N], valid float32 [B, N]); valid is 0 where fewer than N
        concepts are left after exclusion (those ids are arbitrary).
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    vocabulary_size = original_maps.shape[-1]
    reduce = ops.max if score == "max" else ops.mean
    scores = reduce(original_maps, axis=(1, 2))  # [B, V]
    exclude_ids = ops.cast(exclude_ids, "int32")
    # one_hot of -1 is all zeros, so padding excludes nothing.
    excluded = ops.max(ops.one_hot(exclude_ids, vocabulary_size), axis=1) > 0  # [B, V]
    scores = ops.where(excluded, float("-inf"), scores)
    values, ids = ops.top_k(scores, min(top_n, vocabulary_size))
    return ops.cast(ids, "int32"), ops.cast(values > float("-inf"), "float32")


def binarize_attention(maps, threshold: float = 0.5, min_max: bool = True):
    """B(alpha): 1 where the map is >= threshold, over the last two (spatial) axes.

    Args:
        maps: float32 [..., h, w].
        threshold: On the min-max normalised map (min_max=True) or on the raw value.
        min_max: Normalise each map to [0, 1] first; a constant map becomes all 0.

    Returns:
        float32 [..., h, w] in {0, 1}.
    """
    if min_max:
        low = ops.min(maps, axis=(-2, -1), keepdims=True)
        high = ops.max(maps, axis=(-2, -1), keepdims=True)
        maps = ops.divide_no_nan(maps - low, high - low)
        # A constant map normalises to 0; keep it all 0 even for threshold <= 0.
        maps = ops.where(high > low, maps, -1.0)
    return ops.cast(maps >= threshold, "float32")


def matching_targets(original_maps, exclude_ids, top_n: int, threshold: float = 0.5,
                     min_max: bool = True, score: str = "max") -> dict[str, Any]:
    """Concepts and binary targets of the matching loss for a batch.

    Args:
        original_maps: float32 [B, h, w, V] coarse maps from the frozen stage-1 network.
        exclude_ids: int [B, K] the image's box concepts (-1 = padding).
        top_n, score: See `select_matching_concepts`.
        threshold, min_max: See `binarize_attention`.

    Returns:
        {"concept_ids": int32 [B, N] (score them with the refinement network),
         "matching_masks": float32 [B, N, h, w], "matching_valid": float32 [B, N]}.
    """
    ids, valid = select_matching_concepts(original_maps, exclude_ids, top_n, score)
    chosen = tf.gather(original_maps, ids, axis=3, batch_dims=1)  # [B, h, w, N]
    chosen = ops.transpose(chosen, (0, 3, 1, 2))  # [B, N, h, w]
    return {"concept_ids": ids, "matching_masks": binarize_attention(chosen, threshold, min_max),
            "matching_valid": valid}


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class MatchingLoss(keras.losses.Loss):
    """c * sum_k valid_k * mean_pixels xent(B(alpha0_k), alpha_k) per sample (eq. 2).

    Args:
        weight: c (paper 1e-6; see the module docstring on scale).

    Call args:
        y_true: {"matching_masks": float32 [B, N, h, w], "matching_valid": float32
            [B, N]} from `matching_targets`.
        y_pred: Refined logits of the same N concepts, float32 [B, N, h, w].

    Returns (before reduction): float32 [B].
    """

    def __init__(self, weight: float = 1e-6, name: str = "matching_loss",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.weight = float(weight)

    def call(self, y_true, y_pred):
        per_concept = ops.mean(sigmoid_cross_entropy(y_true["matching_masks"], y_pred),
                               axis=(2, 3))  # [B, N]
        return self.weight * ops.sum(per_concept * y_true["matching_valid"], axis=1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weight": self.weight}
