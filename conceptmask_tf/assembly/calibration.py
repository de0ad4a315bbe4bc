"""The two values of a ConceptMask model chosen on validation data (paper §4.4).

- The presence threshold and slope: the paper verifies "the existence of the concept ...
  separately"; here the image-level cosine similarity (ConceptMask's "similarity" output)
  is thresholded, and `PresenceScore` turns it into sigmoid(scale * (s - threshold)).
- theta of the weak-concept rule (`WeakConceptBlend`): alpha = theta * alpha_q +
  (1 - theta) * alpha_p for concepts without box/mask supervision, chosen on validation
  IoU of the weak_image concepts.

`calibrate_presence` and `choose_weak_theta` are pure numpy; `calibrate_model` runs a
ConceptMask model over the data root's `val/<split>.json` files and sets both values on it.
Pairs of a zero-shot concept, or of one containing a zero-shot word (DESIGN.md §3), choose
neither value.
"""

from __future__ import annotations

import collections
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from conceptmask_tf.base.metrics import binary_scores
from conceptmask_tf.concepts.concept_sets import load_training_concepts
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.data.coco import decode_mask
from conceptmask_tf.data.images import load_image
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.splits import read_split_ground_truth
from conceptmask_tf.data.types import MaskedImage
from conceptmask_tf.models.graph_function import graph_function

logger = logging.getLogger(__name__)

THETAS = (0.0, 0.25, 0.5, 0.75, 1.0)
CRITERIA = ("balanced_accuracy", "mcc")
# Presence at a typical positive (and 1 - presence at a typical negative), see
# `calibrate_presence`: sigmoid(ln 9) = 0.9.
_TYPICAL_PRESENCE = 0.9
_MIN_HALF_GAP = 1e-3  # cosine units; caps the slope at ln(9) / 1e-3 ~ 2200


def _scores(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"calibrate_presence needs at least one {name} similarity; got none "
                         f"(the validation files gave no {name} (image, concept) pair)")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} similarities contain NaN or inf")
    return array


def presence_metrics(similarities_pos: Sequence[float] | np.ndarray,
                     similarities_neg: Sequence[float] | np.ndarray,
                     threshold: float) -> dict[str, float]:
    """Balanced accuracy and MCC of "present iff similarity > threshold".

    Args:
        similarities_pos: Similarities of present (image, concept) pairs.
        similarities_neg: Similarities of verified-absent pairs.
        threshold: The decision threshold.

    Returns:
        {"balanced_accuracy", "mcc", "tpr", "tnr"}; MCC is 0 when a row or column of the
        confusion matrix is empty (the usual convention).
    """
    pos = _scores(similarities_pos, "positive")
    neg = _scores(similarities_neg, "negative")
    tp, fn = float(np.sum(pos > threshold)), float(np.sum(pos <= threshold))
    fp, tn = float(np.sum(neg > threshold)), float(np.sum(neg <= threshold))
    return {"balanced_accuracy": 0.5 * (tp / (tp + fn) + tn / (tn + fp)),
            "mcc": _mcc(tp, fp, tn, fn), "tpr": tp / (tp + fn), "tnr": tn / (tn + fp)}


def _mcc(tp, fp, tn, fn):
    """Matthews correlation; works elementwise on arrays of counts."""
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return np.where(denominator > 0, (tp * tn - fp * fn) / np.maximum(denominator, 1e-300),
                    0.0)


def calibrate_presence(similarities_pos: Sequence[float] | np.ndarray,
                       similarities_neg: Sequence[float] | np.ndarray,
                       criterion: str = "balanced_accuracy") -> tuple[float, float]:
    """Chooses PresenceScore's (threshold, scale) from validation similarities.

    Threshold: the rule is "present iff similarity > threshold". The candidates are the
    midpoints between consecutive distinct observed similarities (plus one below the
    smallest and one above the largest); the one with the best `criterion` wins. Several
    equally good candidates form a plateau; the middle one (the median candidate, the
    lower of the two middle ones for an even count) is taken, so a threshold between two
    separable groups lands midway in the gap between them.

    Scale: the sigmoid presence is 0.5 at the threshold by construction; the slope makes a
    typical example confident: scale = ln(9) / d with d half the distance between the
    positive and the negative medians, so a score d above (below) the threshold gets
    presence 0.9 (0.1). When the medians do not differ (d <= 1e-3), d is the standard
    deviation of all scores, floored at 1e-3 (scale <= ~2200).

    Args:
        similarities_pos: Similarities (cosine) of present (image, concept) pairs.
        similarities_neg: Similarities of verified-absent pairs.
        criterion: "balanced_accuracy" (mean of true-positive and true-negative rates;
            insensitive to the class ratio) or "mcc" (Matthews correlation).

    Returns:
        (threshold, scale) as Python floats.

    Raises:
        ValueError: An empty group (e.g. all pairs positive: no threshold can be judged),
            a non-finite score, or an unknown criterion.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    pos = _scores(similarities_pos, "positive")
    neg = _scores(similarities_neg, "negative")
    values = np.unique(np.concatenate([pos, neg]))  # sorted, distinct
    margin = max(1e-6, 1e-3 * float(values[-1] - values[0]))
    candidates = np.concatenate([[values[0] - margin], 0.5 * (values[1:] + values[:-1]),
                                 [values[-1] + margin]])  # [C]
    # Counts above each candidate, via sorted search: [C] each.
    tp = pos.size - np.searchsorted(np.sort(pos), candidates, side="right")
    fp = neg.size - np.searchsorted(np.sort(neg), candidates, side="right")
    fn, tn = pos.size - tp, neg.size - fp
    if criterion == "balanced_accuracy":
        quality = 0.5 * (tp / pos.size + tn / neg.size)
    else:
        quality = _mcc(tp.astype(np.float64), fp.astype(np.float64), tn.astype(np.float64),
                       fn.astype(np.float64))
    best = np.flatnonzero(quality >= quality.max() - 1e-12)
    threshold = float(candidates[best[(len(best) - 1) // 2]])
    half_gap = 0.5 * float(np.median(pos) - np.median(neg))
    if half_gap <= _MIN_HALF_GAP:
        half_gap = max(float(np.std(np.concatenate([pos, neg]))), _MIN_HALF_GAP)
    logit = math.log(_TYPICAL_PRESENCE / (1.0 - _TYPICAL_PRESENCE))
    return threshold, logit / half_gap


def best_theta(scores: Mapping[float, float]) -> float:
    """The theta with the highest validation score; ties go to the larger theta.

    A larger theta keeps more of the concept's own attention map, so among equally good
    values the one that changes the model least is taken.

    Raises:
        ValueError: No scores, a NaN score, or a theta outside [0, 1].
    """
    if not scores:
        raise ValueError("no theta was scored")
    for theta, score in scores.items():
        if not 0.0 <= theta <= 1.0:
            raise ValueError(f"theta must be in [0, 1], got {theta}")
        if not math.isfinite(score):
            raise ValueError(f"theta {theta} has a non-finite score {score}")
    top = max(scores.values())
    return float(max(t for t, s in scores.items() if s >= top - 1e-12))


def choose_weak_theta(candidates: Sequence[float],
                      score_fn: Callable[[float], float]) -> tuple[float, dict[float, float]]:
    """Scores each candidate theta (e.g. weak_image validation mean IoU) and picks the best.

    Args:
        candidates: Thetas to try, e.g. `THETAS` = (0, 0.25, 0.5, 0.75, 1).
        score_fn: theta -> validation score, higher is better.

    Returns:
        (best theta as in `best_theta`, {theta: score} for every candidate).
    """
    scores = {float(t): float(score_fn(float(t))) for t in candidates}
    return best_theta(scores), scores


class _SplitPass:
    """Per-image concept batches of one val split and the model's outputs on them.

    Concepts of `excluded` (zero-shot, or containing a zero-shot word) are left out of the
    batches and counted in `held_out`; so are concepts without a word vector, in `unknown`.
    """

    def __init__(self, data_root: str, split: str, embeddings: ConceptEmbeddings,
                 max_images: int | None, excluded: frozenset[str] = frozenset()) -> None:
        self.split = split
        self.images: list[MaskedImage] = read_split_ground_truth(DataRoot(data_root), split,
                                                                 which="val")
        if max_images is not None:
            self.images = self.images[:max_images]
        self.data_root = data_root
        self.embeddings = embeddings
        self.excluded = excluded
        self.unknown: collections.Counter[str] = collections.Counter()
        self.held_out: collections.Counter[str] = collections.Counter()

    def batches(self):
        """Yields (image, masked image, concepts, is_present, vectors [1, K, D])."""
        for item in self.images:
            concepts, present = [], []
            for concept, flag in ([(m.concept, True) for m in item.masks]
                                  + [(c, False) for c in item.neg_concepts]):
                if self._known(concept):
                    concepts.append(concept)
                    present.append(flag)
            if not concepts:
                continue
            image = load_image(os.path.join(self.data_root, item.image))
            vectors = self.embeddings.vectors_for(concepts)[None]  # [1, K, D]
            yield image, item, concepts, np.asarray(present), vectors

    def _known(self, concept: str) -> bool:
        if concept in self.excluded:
            self.held_out[concept] += 1
            return False
        if concept in self.embeddings:  # a vocabulary concept or a phrase of known words
            return True
        self.unknown[concept] += 1
        return False

    def run(self, model: Any, positives: list[float] | None = None,
            negatives: list[float] | None = None) -> dict[str, Any]:
        """Mean IoU of the present concepts (per concept, then over concepts).

        Appends present / verified-absent similarities to `positives` / `negatives`.
        """
        per_concept: dict[str, list[float]] = collections.defaultdict(list)
        inside: list[float] = []  # mean mask prob on / off the ground truth, per pair
        outside: list[float] = []
        images = 0
        for image, item, concepts, present, vectors in self.batches():
            outputs = model({"image": image[None].astype(np.float32),
                             "word_vectors": vectors.astype(np.float32)})
            similarity = np.asarray(outputs["similarity"])[0]  # [K]
            probs = np.asarray(outputs["mask_probs"])[0]  # [K, H, W]
            if positives is not None:
                positives.extend(similarity[present].tolist())
                negatives.extend(similarity[~present].tolist())
            masks = {m.concept: m for m in item.masks}
            for k, concept in enumerate(concepts):
                if not present[k]:
                    continue
                mask = masks[concept]
                ignore = None if mask.ignore_rle is None else decode_mask(mask.ignore_rle)
                truth = decode_mask(mask.rle).astype(bool)  # [H, W]
                if truth.any() and not truth.all():
                    inside.append(float(probs[k][truth].mean()))
                    outside.append(float(probs[k][~truth].mean()))
                kept = truth if ignore is None else truth & ~ignore.astype(bool)
                if not kept.any():
                    continue  # nothing to score (outside the ignored region)
                per_concept[concept].append(binary_scores(probs[k], truth, ignore)[2])
            images += 1
        means = [float(np.mean(v)) for v in per_concept.values()]
        return {"iou": float(np.mean(means)) if means else float("nan"),
                "concepts": len(means), "images": images,
                "prob_inside": float(np.mean(inside)) if inside else float("nan"),
                "prob_outside": float(np.mean(outside)) if outside else float("nan")}


def calibrate_model(model: Any, data_root: str, concepts_dir: str,
                    splits: Sequence[str] = ("strong", "weak_box", "weak_image"),
                    thetas: Sequence[float] = THETAS, max_images: int | None = None,
                    criterion: str = "balanced_accuracy",
                    predict: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
                    ) -> dict[str, Any]:
    """Calibrates presence and theta of a ConceptMask model on `val/<split>.json` and sets them.

    Each validation image is one batch: all its present concepts (those with a mask) and its
    verified-absent concepts (`neg_concept_ids`), as word vectors; concepts without a word
    vector are skipped and counted, and so are the concepts that are no training target by
    the data root's splits.json (zero-shot, or containing a zero-shot word:
    `TrainingConcepts.excluded`), so they choose neither theta nor the threshold. Present
    vs verified-absent similarities of all splits calibrate presence (`calibrate_presence`).
    If "weak_image" is among `splits` and the model has supervised vectors, every theta is tried on the weak_image images and the one
    with the best mean IoU is kept (`choose_weak_theta`); the other splits then run once with
    it. Masks are binarised at 0.5; IoU is per (image, concept), averaged per concept, then
    over concepts. Images run one at a time, through one graph function (`graph_function`):
    theta is a weight, so trying each value needs no new trace.

    Args:
        model: A `conceptmask_tf.models.ConceptMask`.
        data_root: Data root with val/<split>.json and the images.
        concepts_dir: Folder of the word vectors (concepts.tsv, word_vectors.npy).
        splits: Validation splits to use.
        thetas: Candidate thetas.
        max_images: Use at most this many images of each split (first in file order).
        criterion: Presence criterion, "balanced_accuracy" or "mcc".
        predict: Runs the model on {"image", "word_vectors"} arrays; default
            `graph_function(model)`.

    Returns:
        {"threshold", "scale", "theta", "presence": {"positives", "negatives",
        "balanced_accuracy", "mcc", "min_similarity", "max_similarity"}, "theta_iou":
        {theta: weak_image mean IoU} (empty when not searched), "split_iou": {split: {"iou",
        "concepts", "images", "prob_inside", "prob_outside"}} at the chosen theta (the
        last two: mean mask probability on and off the ground truth, a diagnostic of
        masks that separate but stay under 0.5), "unknown_concepts": {concept: count},
        "held_out_concepts": {concept: count} (pairs skipped as zero-shot or containing a
        zero-shot word)}.

    Raises:
        FileNotFoundError: A val/<split>.json file is missing.
        ValueError: No present or no verified-absent pair in the validation images.
    """
    concepts = load_training_concepts(data_root, concepts_dir)
    predict = predict or graph_function(model, concepts.embeddings.dim)
    passes = {split: _SplitPass(data_root, split, concepts.embeddings, max_images,
                                concepts.excluded)
              for split in splits}
    positives: list[float] = []
    negatives: list[float] = []
    split_iou: dict[str, dict[str, Any]] = {}
    theta_iou: dict[float, float] = {}
    theta = model.weak_theta
    if "weak_image" in passes and model.num_supervised > 0:
        weak = passes["weak_image"]
        results: dict[float, dict[str, Any]] = {}

        def score(candidate: float) -> float:
            model.set_weak_theta(candidate)
            first = not results  # similarities do not depend on theta: collect them once
            results[candidate] = weak.run(predict, positives if first else None,
                                          negatives if first else None)
            return results[candidate]["iou"]

        theta, theta_iou = choose_weak_theta(thetas, score)
        split_iou["weak_image"] = results[theta]
    model.set_weak_theta(theta)
    for split, split_pass in passes.items():
        if split not in split_iou:
            split_iou[split] = split_pass.run(predict, positives, negatives)
    threshold, scale = calibrate_presence(positives, negatives, criterion)
    model.presence_score.set_calibration(threshold, scale)
    metrics = presence_metrics(positives, negatives, threshold)
    unknown = collections.Counter()
    held_out = collections.Counter()
    for split_pass in passes.values():
        unknown.update(split_pass.unknown)
        held_out.update(split_pass.held_out)
    if unknown:
        logger.warning("calibration skipped %d concepts without a word vector: %s",
                       len(unknown), ", ".join(sorted(unknown)[:10]))
    if held_out:
        logger.warning("calibration skipped %d pairs of %d zero-shot concepts or concepts "
                       "containing a zero-shot word: %s", sum(held_out.values()),
                       len(held_out), ", ".join(sorted(held_out)[:10]))
    return {"threshold": threshold, "scale": scale, "theta": theta,
            "presence": {"positives": len(positives), "negatives": len(negatives),
                         "balanced_accuracy": metrics["balanced_accuracy"],
                         "mcc": float(metrics["mcc"]),
                         "min_similarity": float(min(positives + negatives)),
                         "max_similarity": float(max(positives + negatives))},
            "theta_iou": theta_iou, "split_iou": split_iou, "unknown_concepts": dict(unknown),
            "held_out_concepts": dict(held_out)}
