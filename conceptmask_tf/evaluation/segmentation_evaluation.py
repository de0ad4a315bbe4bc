"""Segmentation quality per supervision split (paper §5.3-§5.4, Tables 2-3) and presence.

For each (image, present concept): mask probabilities binarised at 0.5 give precision,
recall and IoU (`metrics.binary_scores`), averaged per concept, then over concepts
(`metrics.ConceptAverager`); all pixels of the present pairs of a split also feed the
threshold-free pixel AP (`metrics.PixelAveragePrecision`). With presence, verified-absent
pairs join too and every pair feeds `metrics.PresenceF1` (predicted present = presence
>= 0.5, the calibrated decision), pooled over splits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from conceptmask_tf.base import metrics
from conceptmask_tf.evaluation.eval_set import EvalSet
from conceptmask_tf.evaluation.predictors import Predictor, predict_pairs
from conceptmask_tf.evaluation.report import PRESENCE_METRICS

BINARY_METRICS = ("precision", "recall", "iou")
PRESENCE_THRESHOLD = 0.5


def null_segmentation() -> dict[str, Any]:
    """The entry of a split (or variant) that was not measured."""
    return {"precision": None, "recall": None, "iou": None, "ap": None, "concepts": 0,
            "images": 0}


def null_presence() -> dict[str, Any]:
    """The presence entry when nothing was measured."""
    return {**{m: None for m in PRESENCE_METRICS}, "positives": 0, "negatives": 0}


@dataclasses.dataclass
class SegmentationResult:
    """Metrics of one model variant.

    Attributes:
        by_split: split -> {"precision", "recall", "iou", "ap", "concepts", "images"}.
        presence: {"cgf1", "il_mcc", "pm_f1", "positives", "negatives"}, or None when not
            measured.
        per_concept: split -> concept -> {"precision", "recall", "iou", "images"} (the
            concept's means over its images).
    """

    by_split: dict[str, dict[str, Any]]
    presence: dict[str, Any] | None = None
    per_concept: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)


def evaluate_segmentation(predict: Predictor, eval_set: EvalSet,
                          splits: Sequence[str] | None = None, presence: bool = False,
                          presence_predict: Predictor | None = None, batch_size: int = 16,
                          progress: bool = True, desc: str = "segmentation",
                          with_truth: bool = False) -> SegmentationResult:
    """Scores a segmentation variant on each split.

    Args:
        predict: Returns "mask_probs" [B, K, H, W] in [0, 1] (and "presence" [B, K] when
            `presence`).
        eval_set: The ground truth.
        splits: Splits to score (None: all read); their pairs run in one pass over the
            images.
        presence: Also score verified-absent pairs and compute `PresenceF1` over all pairs.
        presence_predict: Returns "presence" [B, K] only, for the verified-absent pairs
            (they need no mask; `predictors.presence_model` skips the mask passes). None:
            `predict` runs them.
        batch_size: Most images per model call.
        progress: Show a progress bar.
        desc: The progress bar's label.
        with_truth: The predictor takes the ground-truth masks ("truth_masks",
            `predictors.OracleAttention`).

    Returns:
        The metrics; splits without ground truth (or without pairs) get
        `null_segmentation()`.
    """
    splits = tuple(eval_set.splits if splits is None else splits)
    averagers = {s: metrics.ConceptAverager(BINARY_METRICS) for s in splits}
    pixel_ap = {s: metrics.PixelAveragePrecision() for s in splits}
    presence_f1 = metrics.PresenceF1() if presence else None
    keys = ("mask_probs", "presence") if presence else ("mask_probs",)
    for image, pair, outputs in predict_pairs(predict, eval_set, splits, keys,
                                              batch_size=batch_size, progress=progress,
                                              desc=desc, with_truth=with_truth):
        probs = outputs["mask_probs"]  # [H, W]
        truth, ignore = pair.truth()
        precision, recall, iou = metrics.binary_scores(probs, truth, ignore)
        averagers[pair.split].add(pair.concept, image.image, precision=precision,
                                  recall=recall, iou=iou)
        pixel_ap[pair.split].add(probs, truth, ignore)
        if presence_f1 is not None:
            presence_f1.add(True, _is_present(outputs), probs, truth, ignore)
    if presence_f1 is not None:
        for _, pair, outputs in predict_pairs(presence_predict or predict, eval_set, splits,
                                              ("presence",), present=False, absent=True,
                                              batch_size=batch_size, progress=progress,
                                              desc=f"{desc} (absent concepts)"):
            presence_f1.add(False, _is_present(outputs))
    by_split = {s: null_segmentation() for s in (*splits, *eval_set.missing_splits)}
    for split in splits:
        averaged = averagers[split].result()
        if averaged["concepts"]:
            by_split[split] = {**{m: averaged[m] for m in BINARY_METRICS},
                               "ap": pixel_ap[split].result(),
                               "concepts": averaged["concepts"], "images": averaged["images"]}
    per_concept = {}
    for split in splits:
        images = averagers[split].concept_images()
        per_concept[split] = {concept: {**values, "images": images[concept]}
                              for concept, values in averagers[split].per_concept().items()}
    presence_result = None
    if presence_f1 is not None:
        presence_result = presence_f1.result()
        if presence_result["positives"] + presence_result["negatives"] == 0:
            presence_result = null_presence()
    return SegmentationResult(by_split, presence_result, per_concept)


def _is_present(outputs: dict[str, Any]) -> bool:
    """The model's presence decision for one pair."""
    return bool(outputs["presence"] >= PRESENCE_THRESHOLD)
