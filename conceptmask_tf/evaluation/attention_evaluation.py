"""Attention-map quality (paper §5.2, Table 1): pointing game and soft IoU per variant.

For each (image, present concept) the variant's map, upsampled bilinearly to the image
size, is scored against the ground truth, averaged per concept and then over concepts
(`metrics.ConceptAverager`). The paper's protocol gives the first two metrics:

  pointing_game         the map's maximum lies in one of the concept's ground-truth boxes;
  soft_iou              eq. 5 against the union of the boxes, on the map as the network
                        outputs it, in [0, 1] (`as_probability`);

and three extra columns keep what earlier versions reported:

  pointing_game_mask    the maximum lies in the exact mask;
  soft_iou_mask         eq. 5 against the exact mask, same map as soft_iou;
  soft_iou_mask_minmax  eq. 5 against the mask on the map min-max normalised per map (what
                        the segmentation network sees, `NormalizeAttention`).

Maps in [0, 1] (`as_probability`): refined maps are sigmoid probabilities and are used as
they are; coarse maps ("original", "original_finetuned") are cosines in [-1, 1] (or inner
products, `similarity="dot"`) and are clipped to [0, 1], i.e. a negative similarity is no
attention. This rule is ours (the paper says only that the map "is a probability mask
that ranges from 0 to 1") and it is fixed, so no column depends on a per-map rescaling.
The pointing game uses the map before clipping (the maximum is unchanged unless the
whole map is negative, where clipping would make every pixel a tie).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from conceptmask_tf.base import metrics
from conceptmask_tf.evaluation.eval_set import EvalSet
from conceptmask_tf.evaluation.predictors import Predictor, predict_pairs
from conceptmask_tf.evaluation.report import ATTENTION_METRICS, ATTENTION_VARIANTS

COUNTS = ("concepts", "images")
COARSE_VARIANTS = ("original", "original_finetuned")


def as_probability(variant: str, values: np.ndarray) -> np.ndarray:
    """A variant's map in [0, 1] by the fixed rule of the module docstring (float64)."""
    values = np.asarray(values, dtype=np.float64)
    return np.clip(values, 0.0, 1.0) if variant in COARSE_VARIANTS else values


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
    """Table 1 metrics (module docstring) of each attention variant on each split.

    Args:
        predict: Returns one [B, K, H, W] map per name in `variants` (`AttentionMaps`).
        eval_set: The ground truth.
        variants: Map names to score.
        splits: Splits to score (None: all read). The pairs of every split run in one
            pass over the images.
        batch_size: Most images per model call.
        progress: Show a progress bar.

    Returns:
        split -> variant -> {metric of `ATTENTION_METRICS`, "concepts", "images",
        "per_concept": concept -> {metric: its mean over the concept's images}}; splits and
        variants of `ATTENTION_VARIANTS` without a pair get `null_attention()` (no
        "per_concept").
    """
    splits = tuple(eval_set.splits if splits is None else splits)
    averagers = {(s, v): metrics.ConceptAverager(ATTENTION_METRICS)
                 for s in splits for v in variants}
    for image, pair, maps in predict_pairs(predict, eval_set, splits, keys=variants,
                                           batch_size=batch_size, progress=progress,
                                           desc="attention maps"):
        truth, ignore = pair.truth()
        boxes = pair.box_truth()
        for variant in variants:
            raw = maps[variant]  # [H, W]
            attention = as_probability(variant, raw)
            averagers[pair.split, variant].add(
                pair.concept, image.image,
                pointing_game=metrics.pointing_game_hit(raw, boxes, ignore),
                soft_iou=metrics.soft_iou(attention, boxes, ignore),
                pointing_game_mask=metrics.pointing_game_hit(raw, truth, ignore),
                soft_iou_mask=metrics.soft_iou(attention, truth, ignore),
                soft_iou_mask_minmax=metrics.soft_iou(unit_range(raw), truth, ignore))
    results = {}
    for split in (*splits, *(s for s in eval_set.missing_splits if s not in splits)):
        results[split] = {v: null_attention() for v in ATTENTION_VARIANTS}
        for variant in variants:
            if (split, variant) in averagers:
                averager = averagers[split, variant]
                results[split][variant] = {**averager.result(),
                                            "per_concept": averager.per_concept()}
    return results


SIMILAR_VECTORS = 0.5  # cosine from which a pair's word vectors count as similar


def concept_specificity(predict: Predictor, eval_set: EvalSet, variants: Sequence[str],
                        batch_size: int = 16, progress: bool = True) -> dict[str, Any]:
    """How often a concept's map peaks in its own region rather than another concept's.

    Over every image and every ordered pair (a, b) of concepts present in it whose ground
    truths do not overlap (any splits): a's map is specific when its maximum over a's mask
    is above its maximum over b's (a tie counts half). Pairs are also split by the cosine
    of their word vectors: a pair whose vectors are alike (cosine >= `SIMILAR_VECTORS`) is
    the harder case, and vectors that are near-identical cannot be told apart at all.

    Args:
        predict: Returns one [B, K, H, W] map per name in `variants` (`AttentionMaps`).
        eval_set: The ground truth.
        variants: Map names to score.
        batch_size: Most images per model call.
        progress: Show a progress bar.

    Returns:
        {"pairs": n ordered pairs, "similar_pairs": n with alike vectors,
         "mean_cosine": mean word-vector cosine over the pairs (None without pairs),
         variant: {"own_region": fraction, "own_region_similar": fraction over the alike
         pairs (None without one)}}.
    """
    unit = {c: v / max(float(np.linalg.norm(v)), 1e-12) for c, v in eval_set.vectors.items()}
    wins = {v: [] for v in variants}
    similar_wins = {v: [] for v in variants}
    cosines: list[float] = []
    current, members = None, []

    def score_image(members: list[tuple[str, np.ndarray, dict[str, np.ndarray]]]) -> None:
        for i, (a, mask_a, maps_a) in enumerate(members):
            for j, (b, mask_b, _) in enumerate(members):
                if i == j or (mask_a & mask_b).any():
                    continue
                cosine = float(unit[a] @ unit[b])
                cosines.append(cosine)
                for variant in variants:
                    own, other = maps_a[variant][mask_a].max(), maps_a[variant][mask_b].max()
                    win = 1.0 if own > other else 0.5 if own == other else 0.0
                    wins[variant].append(win)
                    if cosine >= SIMILAR_VECTORS:
                        similar_wins[variant].append(win)

    for image, pair, maps in predict_pairs(predict, eval_set, eval_set.splits, keys=variants,
                                           batch_size=batch_size, progress=progress,
                                           desc="concept specificity"):
        if image.image != current:
            score_image(members)
            current, members = image.image, []
        if all(pair.concept != c for c, _, _ in members):  # a concept in two splits: once
            truth, ignore = pair.truth()
            region = truth & ~ignore if ignore is not None else truth
            if region.any():
                members.append((pair.concept, region, maps))
    score_image(members)
    result: dict[str, Any] = {
        "pairs": len(cosines), "similar_pairs": sum(c >= SIMILAR_VECTORS for c in cosines),
        "mean_cosine": float(np.mean(cosines)) if cosines else None}
    for variant in variants:
        result[variant] = {
            "own_region": float(np.mean(wins[variant])) if wins[variant] else None,
            "own_region_similar": (float(np.mean(similar_wins[variant]))
                                   if similar_wins[variant] else None)}
    return result
