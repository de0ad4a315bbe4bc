"""Attention and segmentation metrics (paper §5.2-§5.3), in plain numpy.

Per (image, concept) pair:
  - `pointing_game_hit`: the attention's maximum lies in the ground-truth mask.
  - `soft_iou`: paper eq. 5, sum(a * G) / sum(max(a, G)) for a soft map a in [0, 1].
  - `binary_scores`: precision, recall and IoU of probabilities binarised at 0.5.
These score positive pairs only (the concept is in the image): a ground-truth mask with no
positive pixel raises ValueError.

Accumulators over a split:
  - `ConceptAverager`: per-concept means, then the mean over concepts (paper §5.3).
  - `PixelAveragePrecision`: threshold-free AP over all pixels (the PhraseCut metric).
  - `PresenceF1`: SAM 3's presence-aware cgF1 = pmF1 * IL_MCC, on semantic masks.

`ignore` arguments are boolean maps of pixels that count nowhere (COCO crowd regions).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Hashable, Iterable

import numpy as np

_RANGE_TOLERANCE = 1e-6
_RESERVED_KEYS = ("concepts", "images")


def _as_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """Returns `mask` as a bool array; accepts bool or values in {0, 1}."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask
    if mask.size and not np.all((mask == 0) | (mask == 1)):
        raise ValueError(f"{name} must be boolean or hold only 0 and 1, got values "
                         f"in [{mask.min()}, {mask.max()}]")
    return mask.astype(bool)


def _as_unit_scores(scores: np.ndarray, name: str) -> np.ndarray:
    """Returns `scores` as float64 clipped to [0, 1]; raises if outside beyond 1e-6."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size:
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"{name} holds non-finite values (NaN or inf)")
        low, high = scores.min(), scores.max()
        if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
            raise ValueError(f"{name} must lie in [0, 1], got values in [{low}, {high}]")
    return np.clip(scores, 0.0, 1.0)


def _check_shapes(reference_name: str, reference: np.ndarray, **others: np.ndarray | None
                  ) -> None:
    """Raises ValueError naming both shapes when an array's shape differs from `reference`."""
    for name, array in others.items():
        if array is not None and array.shape != reference.shape:
            raise ValueError(f"{name} shape {array.shape} does not match {reference_name} "
                             f"shape {reference.shape}")


def _kept(ignore: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
    """Returns the bool map of pixels that count (not ignored), shaped like `mask`."""
    if ignore is None:
        return np.ones(mask.shape, dtype=bool)
    ignore = _as_mask(ignore, "ignore")
    _check_shapes("mask", mask, ignore=ignore)
    return ~ignore


def _prepare_pair(scores: np.ndarray, mask: np.ndarray, ignore: np.ndarray | None,
                  scores_name: str, allow_empty_mask: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Validates a (scores, mask, ignore) triple; returns the kept scores and mask as 1-D arrays.

    Raises:
        ValueError: on a shape mismatch, scores outside [0, 1] or non-finite, a mask that is not
            binary, or (unless `allow_empty_mask`) a mask with no positive pixel left after
            removing ignored pixels.
    """
    mask = _as_mask(mask, "mask")
    scores = np.asarray(scores)
    _check_shapes("mask", mask, **{scores_name: scores})
    scores = _as_unit_scores(scores, scores_name)
    kept = _kept(ignore, mask)
    mask = mask[kept]  # [N kept pixels]
    if not allow_empty_mask and not mask.any():
        raise ValueError("mask has no positive pixel outside the ignored region: absent "
                         "concepts must not be scored")
    return scores[kept], mask


def pointing_game_hit(attention: np.ndarray, mask: np.ndarray,
                      ignore: np.ndarray | None = None) -> bool:
    """Whether the attention's maximum lies in the mask (pointing game, paper §5.2).

    Ties are broken by the first maximum in row-major order (`np.argmax` of the flattened
    map), never in the mask's favour. Ignored pixels cannot be the maximum.

    Args:
        attention: float [H, W] attention map, already resized to the mask's size. Any finite
            values (no range is required).
        mask: bool or {0, 1} [H, W] ground-truth mask of the concept.
        ignore: optional bool [H, W]; True pixels (crowd regions) are left out.

    Returns:
        True on a hit.

    Raises:
        ValueError: on a shape mismatch, a non-finite attention value, or a mask with no positive
            pixel outside `ignore`.
    """
    mask = _as_mask(mask, "mask")
    attention = np.asarray(attention, dtype=np.float64)
    _check_shapes("mask", mask, attention=attention)
    if not np.all(np.isfinite(attention)):
        raise ValueError("attention holds non-finite values (NaN or inf)")
    kept = _kept(ignore, mask)
    if not (mask & kept).any():
        raise ValueError("mask has no positive pixel outside the ignored region: absent "
                         "concepts must not be scored")
    candidates = np.where(kept, attention, -np.inf)  # [H, W]
    return bool(mask.reshape(-1)[np.argmax(candidates.reshape(-1))])


def soft_iou(attention: np.ndarray, mask: np.ndarray,
             ignore: np.ndarray | None = None) -> float:
    """Soft IoU of an attention map with a binary mask (paper eq. 5).

    IoU = sum(a * G) / sum(max(a, G)) over the pixels not ignored. For a binary map this is the
    ordinary IoU.

    Args:
        attention: float [H, W] in [0, 1] (values within 1e-6 outside are clipped).
        mask: bool or {0, 1} [H, W] ground-truth mask G.
        ignore: optional bool [H, W]; True pixels are left out.

    Returns:
        The soft IoU in [0, 1]. The union is never empty because the mask must have a positive
        pixel (the caller scores present concepts only).

    Raises:
        ValueError: on a shape mismatch, attention outside [0, 1] or non-finite, or a mask with
            no positive pixel outside `ignore`.
    """
    attention, mask = _prepare_pair(attention, mask, ignore, "attention")
    truth = mask.astype(np.float64)
    return float(np.sum(attention * truth) / np.sum(np.maximum(attention, truth)))


def binary_scores(probs: np.ndarray, mask: np.ndarray, ignore: np.ndarray | None = None,
                  threshold: float = 0.5) -> tuple[float, float, float]:
    """Precision, recall and IoU of `probs >= threshold` against the mask (paper §5.3).

    Args:
        probs: float [H, W] mask probabilities in [0, 1].
        mask: bool or {0, 1} [H, W] ground-truth mask.
        ignore: optional bool [H, W]; True pixels are left out.
        threshold: probabilities at or above it are predicted positive.

    Returns:
        (precision, recall, iou). With no predicted pixel, precision is 0.0 (and so are recall
        and IoU).

    Raises:
        ValueError: on a shape mismatch, probs outside [0, 1] or non-finite, or a mask with no
            positive pixel outside `ignore` (recall is undefined; positive pairs only).
    """
    probs, mask = _prepare_pair(probs, mask, ignore, "probs")
    tp, fp, fn = _confusion(probs >= threshold, mask)
    precision = tp / (tp + fp) if tp + fp else 0.0
    return precision, tp / (tp + fn), tp / (tp + fp + fn)


def _confusion(predicted: np.ndarray, mask: np.ndarray) -> tuple[int, int, int]:
    """Pixel counts (TP, FP, FN) of two bool arrays."""
    tp = int(np.count_nonzero(predicted & mask))
    return tp, int(np.count_nonzero(predicted)) - tp, int(np.count_nonzero(mask)) - tp


class ConceptAverager:
    """Means of named metrics per concept, then over concepts (paper §5.3).

    Each concept weighs the same in `result()` however many images it has.

    Example:
        averager = ConceptAverager()
        averager.add("dog", 17, precision=0.8, recall=0.5, iou=0.4)
        averager.result()  # {"precision": 0.8, ..., "concepts": 1, "images": 1}
    """

    def __init__(self, metrics: Iterable[str] = ()) -> None:
        """Creates an empty averager.

        Args:
            metrics: metric names that always appear in `result()` (None while no value was
                added); other names passed to `add` are accepted too.
        """
        self._metrics: dict[str, None] = {}  # Ordered set of metric names.
        for name in metrics:
            self._add_metric_name(name)
        self._sums: dict[str, dict[str, float]] = collections.defaultdict(dict)
        self._counts: dict[str, dict[str, int]] = collections.defaultdict(dict)
        self._seen: set[tuple[str, Hashable, str]] = set()
        self._images: set[Hashable] = set()

    def _add_metric_name(self, name: str) -> None:
        if name in _RESERVED_KEYS:
            raise ValueError(f"metric name {name!r} is reserved for a count in result()")
        self._metrics[name] = None

    def add(self, concept: str, image_id: Hashable, **values: float) -> None:
        """Adds one (image, concept) pair's metric values.

        Args:
            concept: the concept name.
            image_id: the image's id (any hashable); distinct ids are counted.
            **values: metric name -> finite value (bools count as 0/1).

        Raises:
            ValueError: with no value, a non-finite value, a reserved metric name, or a metric
                already added for this (concept, image_id).
        """
        if not values:
            raise ValueError(f"no metric value given for concept {concept!r}, image {image_id!r}")
        for name, value in values.items():
            if not math.isfinite(float(value)):
                raise ValueError(f"{name} = {value} for concept {concept!r}, image "
                                 f"{image_id!r} is not finite")
            if (concept, image_id, name) in self._seen:
                raise ValueError(f"{name} already added for concept {concept!r}, image "
                                 f"{image_id!r}")
        for name, value in values.items():
            if name not in self._metrics:
                self._add_metric_name(name)
            self._seen.add((concept, image_id, name))
            self._sums[concept][name] = self._sums[concept].get(name, 0.0) + float(value)
            self._counts[concept][name] = self._counts[concept].get(name, 0) + 1
        self._images.add(image_id)

    def per_concept(self) -> dict[str, dict[str, float]]:
        """Returns concept -> metric -> mean over that concept's images (in order added)."""
        return {concept: {name: sums[name] / self._counts[concept][name] for name in sums}
                for concept, sums in self._sums.items()}

    def concept_images(self) -> dict[str, int]:
        """Returns concept -> number of (image, concept) pairs added (its most counted metric)."""
        return {concept: max(counts.values()) for concept, counts in self._counts.items()}

    def result(self) -> dict[str, float | int | None]:
        """Returns metric -> mean over concepts of the per-concept means, plus counts.

        "concepts" is the number of concepts and "images" the number of distinct image ids. A
        metric no concept has a value for is None.
        """
        per_concept = self.per_concept()
        out: dict[str, float | int | None] = {}
        for name in self._metrics:
            means = [m[name] for m in per_concept.values() if name in m]
            out[name] = float(np.mean(means)) if means else None
        out["concepts"] = len(per_concept)
        out["images"] = len(self._images)
        return out


class PixelAveragePrecision:
    """Threshold-free average precision over all pixels of a split (the PhraseCut AP).

    AP = sum_n (R_n - R_{n-1}) P_n over decreasing score thresholds, pixels of equal score
    forming one threshold (non-interpolated, as sklearn's `average_precision_score`). To keep
    memory bounded, scores are quantised to `bins` levels, `round(score * (bins - 1))` (1e-4
    steps with the default), and only per-level positive/negative counts are kept: the result
    is exact for scores on that grid.
    """

    def __init__(self, bins: int = 10001) -> None:
        """Creates an empty accumulator.

        Args:
            bins: number of score levels over [0, 1], at least 2.
        """
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        self._bins = bins
        self._positives = np.zeros(bins, dtype=np.int64)  # [bins] pixel counts per level
        self._negatives = np.zeros(bins, dtype=np.int64)  # [bins]

    def add(self, probs: np.ndarray, mask: np.ndarray, ignore: np.ndarray | None = None) -> None:
        """Adds one (image, concept) pair's pixels; an empty mask adds negatives only.

        Args:
            probs: float [H, W] mask probabilities in [0, 1].
            mask: bool or {0, 1} [H, W] ground-truth mask.
            ignore: optional bool [H, W]; True pixels are left out.

        Raises:
            ValueError: on a shape mismatch or probs outside [0, 1] or non-finite.
        """
        probs, mask = _prepare_pair(probs, mask, ignore, "probs", allow_empty_mask=True)
        levels = np.rint(probs * (self._bins - 1)).astype(np.int64)  # [N kept pixels]
        self._positives += np.bincount(levels[mask], minlength=self._bins)
        self._negatives += np.bincount(levels[~mask], minlength=self._bins)

    def result(self) -> float | None:
        """Returns the AP, or None when no positive pixel was ever added."""
        total_positives = int(self._positives.sum())
        if total_positives == 0:
            return None
        # Walk thresholds from the top level down: cumulative TP and FP at each level.
        tp = np.cumsum(self._positives[::-1])  # [bins]
        fp = np.cumsum(self._negatives[::-1])  # [bins]
        recall_steps = self._positives[::-1] / total_positives
        has_step = recall_steps > 0  # Levels with no positive add nothing (and may be 0/0).
        precision = tp[has_step] / (tp[has_step] + fp[has_step])
        return float(np.sum(recall_steps[has_step] * precision))


class PresenceF1:
    """Presence-aware cgF1 (SAM 3), adapted to one semantic mask per (image, concept).

    Each pair is positive (the concept is in the image, with a mask) or verified negative.
      - il_mcc: Matthews correlation of predicted presence vs presence over all pairs; 0.0 when
        undefined (a zero denominator, e.g. all pairs of one class).
      - pm_f1: pixel micro-F1 over positive pairs only, 2TP / (2TP + FP + FN) with counts summed
        over pairs; a positive pair predicted absent has its prediction suppressed, so its whole
        mask counts as FN. 0.0 when there is no positive pair.
      - cgf1 = pm_f1 * il_mcc, as fractions (SAM 3 reports it x100).
    """

    def __init__(self) -> None:
        """Creates an empty accumulator."""
        self._presence = collections.Counter()  # Keys "tp", "fp", "fn", "tn" over pairs.
        self._pixels = collections.Counter()  # Keys "tp", "fp", "fn" over positive pairs.

    def add(self, present: bool, predicted_present: bool, probs: np.ndarray | None = None,
            mask: np.ndarray | None = None, ignore: np.ndarray | None = None,
            threshold: float = 0.5) -> None:
        """Adds one (image, concept) pair.

        Args:
            present: True for a ground-truth-positive pair, False for a verified-absent one.
            predicted_present: the model's presence decision (a bool, not a score).
            probs: float [H, W] mask probabilities in [0, 1]; required for a positive pair
                predicted present, otherwise unused.
            mask: bool or {0, 1} [H, W]; required for a positive pair, and for a negative pair
                either None or without positive pixels.
            ignore: optional bool [H, W]; True pixels are left out.
            threshold: probabilities at or above it are predicted positive pixels.

        Raises:
            TypeError: if `present` or `predicted_present` is not a bool.
            ValueError: on a missing or inconsistent mask or probs, or invalid arrays (see
                `binary_scores`).
        """
        for name, flag in (("present", present), ("predicted_present", predicted_present)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        present, predicted_present = bool(present), bool(predicted_present)
        if not present:
            if mask is not None and _as_mask(mask, "mask").any():
                raise ValueError("a verified-absent pair must have no mask pixel")
            self._presence["fp" if predicted_present else "tn"] += 1
            return
        if mask is None:
            raise ValueError("a positive pair needs its ground-truth mask")
        if predicted_present:
            if probs is None:
                raise ValueError("a positive pair predicted present needs its probs")
            probs, mask = _prepare_pair(probs, mask, ignore, "probs")
            tp, fp, fn = _confusion(probs >= threshold, mask)
        else:
            mask = _as_mask(mask, "mask")
            kept_mask = mask[_kept(ignore, mask)]
            if not kept_mask.any():
                raise ValueError("mask has no positive pixel outside the ignored region: "
                                 "absent concepts must be added with present=False")
            tp, fp, fn = 0, 0, int(np.count_nonzero(kept_mask))
        self._presence["tp" if predicted_present else "fn"] += 1
        self._pixels.update({"tp": tp, "fp": fp, "fn": fn})

    def result(self) -> dict[str, float | int]:
        """Returns {"cgf1", "il_mcc", "pm_f1", "positives", "negatives"}."""
        tp, fp, fn, tn = (self._presence[k] for k in ("tp", "fp", "fn", "tn"))
        # Python ints: the products cannot overflow.
        denominator = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
        il_mcc = (tp * tn - fp * fn) / math.sqrt(denominator) if denominator else 0.0
        px_tp, px_fp, px_fn = (self._pixels[k] for k in ("tp", "fp", "fn"))
        f1_denominator = 2 * px_tp + px_fp + px_fn
        pm_f1 = 2 * px_tp / f1_denominator if f1_denominator else 0.0
        return {"cgf1": pm_f1 * il_mcc, "il_mcc": il_mcc, "pm_f1": pm_f1,
                "positives": tp + fn, "negatives": fp + tn}
