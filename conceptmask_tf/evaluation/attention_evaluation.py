"""Attention-map quality (paper §5.2, Table 1): pointing game and soft IoU per variant.

For each (image, present concept) the variant's map, upsampled bilinearly to the image
size, is min-max normalised to [0, 1] per map, then scored against the ground-truth mask
with `metrics.pointing_game_hit` and `metrics.soft_iou` (paper eq. 5), averaged per concept
and then over concepts (`metrics.ConceptAverager`).

Normalisation (our choice; the paper only says the map "ranges from 0 to 1"): the coarse
maps are cosines in [-1, 1] and eq. 5 needs [0, 1]; normalising every variant the same way
keeps the columns comparable, and it is what the segmentation network sees
(`NormalizeAttention`). It leaves the pointing game unchanged (the maximum stays put). A
constant map becomes all zeros: soft IoU 0, and its "maximum" is the first pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from conceptmask_tf.evaluation import metrics
from conceptmask_tf.evaluation.eval_set import EvalSet
from conceptmask_tf.evaluation.predictors import Predictor, predict_pairs
from conceptmask_tf.evaluation.report import ATTENTION_METRICS, ATTENTION_VARIANTS

COUNTS = ("concepts", "images")


def unit_range(values: np.ndarray) -> np.ndarray:
    """Min-max normalisation of one map to [0, 1] (float64); a constant map gives zeros."""
    values = np.asarray(values, dtype=np.float64)
    low, high = values.min(), values.max()
    if high <= low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def null_attention() -> dict[str, Any]:
    """The entry of a variant or split that was not measured."""
    return {**{m: None for m in ATTENTION_METRICS}, "concepts": 0, "images": 0}


def evaluate_attention(predict: Predictor, eval_set: EvalSet, variants: Sequence[str],
                       splits: Sequence[str] | None = None, batch_size: int = 16,
                       progress: bool = True) -> dict[str, dict[str, dict[str, Any]]]:
    """Pointing game and soft IoU of each attention variant on each split.

    Args:
        predict: Returns one [B, K, H, W] map per name in `variants` (`AttentionMaps`).
        eval_set: The ground truth.
        variants: Map names to score.
        splits: Splits to score (None: all read). The pairs of every split run in one
            pass over the images.
        batch_size: Most images per model call.
        progress: Show a progress bar.

    Returns:
        split -> variant -> {"pointing_game", "soft_iou", "concepts", "images"}; splits
        and variants of `ATTENTION_VARIANTS` without a pair get `null_attention()`.
    """
    splits = tuple(eval_set.splits if splits is None else splits)
    averagers = {(s, v): metrics.ConceptAverager(ATTENTION_METRICS)
                 for s in splits for v in variants}
    for image, pair, maps in predict_pairs(predict, eval_set, splits, keys=variants,
                                           batch_size=batch_size, progress=progress,
                                           desc="attention maps"):
        truth, ignore = pair.truth()
        for variant in variants:
            attention = unit_range(maps[variant])  # [H, W]
            averagers[pair.split, variant].add(
                pair.concept, image.image,
                pointing_game=metrics.pointing_game_hit(attention, truth, ignore),
                soft_iou=metrics.soft_iou(attention, truth, ignore))
    results = {}
    for split in (*splits, *(s for s in eval_set.missing_splits if s not in splits)):
        results[split] = {v: null_attention() for v in ATTENTION_VARIANTS}
        for variant in variants:
            if (split, variant) in averagers:
                results[split][variant] = averagers[split, variant].result()
    return results
