"""The full, calibrated Concept Mask model of a pipeline work dir, ready to export.

`load_concept_mask` composes the stage networks of `<work_dir>/models` into a
`ConceptMask` (with the weak-concept rule's supervised vectors), loads the word vectors
and applies the calibration that `conceptmask-evaluate` chose on validation data (the
"calibration" entry of report.json: presence threshold and scale, theta).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

from conceptmask_tf.concepts.embeddings import ConceptEmbeddings, require_concepts
from conceptmask_tf.errors import DataError
from conceptmask_tf.evaluation.evaluator import default_concepts_dir
from conceptmask_tf.evaluation.variants import (
    ModelVariants,
    load_variants,
    read_model_config,
    supervised_concepts,
)
from conceptmask_tf.models import ConceptMask
from conceptmask_tf.training.calibration import set_weak_theta

logger = logging.getLogger(__name__)

CALIBRATION_KEYS = ("threshold", "scale", "theta")


def default_report_path(models_dir: str) -> str:
    """`<models_dir>/../report/report.json`, where the pipeline writes the report."""
    return os.path.normpath(os.path.join(models_dir, os.pardir, "report", "report.json"))


def read_calibration(calibration: str | Mapping[str, Any] | None, models_dir: str
                     ) -> tuple[dict[str, float] | None, str, str]:
    """The calibration values to apply, where they came from, and why not when None.

    Args:
        calibration: A report.json path, a calibration entry ({"threshold", "scale",
            "theta"}, as `conceptmask-evaluate` writes it under "calibration"), or None for
            `default_report_path(models_dir)`.
        models_dir: The models folder (for the default path).

    Returns:
        (values or None, source, reason): None with the reason when the default report does
        not exist, has no "calibration" entry, or says the calibration was skipped.

    Raises:
        FileNotFoundError: An explicitly given report path does not exist.
        DataError: The report is not JSON, or its calibration entry lacks a key or holds
            a value out of range.
    """
    if isinstance(calibration, Mapping):
        entry, source = dict(calibration), "argument"
    else:
        source = calibration or default_report_path(models_dir)
        if not os.path.exists(source):
            if calibration is not None:
                raise FileNotFoundError(f"{source} does not exist: the calibration is read "
                                        "from the report.json that conceptmask-evaluate "
                                        "writes")
            return None, source, f"{source} does not exist"
        try:
            with open(source, encoding="utf-8") as f:
                report = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON: {e}", source) from None
        entry = report.get("calibration") if isinstance(report, dict) else None
        if entry is None:
            return None, source, f"{source} has no calibration entry"
    if "skipped" in entry:
        return None, source, f"the calibration was skipped: {entry['skipped']}"
    values = {}
    for key in CALIBRATION_KEYS:
        value = entry.get(key)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DataError(f"calibration {key} must be a finite number, got {value!r}",
                            source, "calibration")
        values[key] = float(value)
    if values["scale"] <= 0:
        raise DataError(f"calibration scale must be > 0, got {values['scale']}", source,
                        "calibration")
    if not 0.0 <= values["theta"] <= 1.0:
        raise DataError(f"calibration theta must be in [0, 1], got {values['theta']}", source,
                        "calibration")
    return values, source, ""


def apply_calibration(model: ConceptMask, values: Mapping[str, float]) -> None:
    """Sets presence threshold and scale and the weak-concept theta on `model`."""
    model.presence_score.set_calibration(values["threshold"], values["scale"])
    set_weak_theta(model, values["theta"])


def current_calibration(model: ConceptMask) -> dict[str, float]:
    """{"threshold", "scale", "theta"} as the model holds them now."""
    presence = model.presence_score.get_config()
    return {"threshold": presence["threshold"], "scale": presence["scale"],
            "theta": float(model.weak_theta)}


def _supervised(variants: ModelVariants, data_root: str | None,
                embeddings: ConceptEmbeddings) -> tuple[list[str], str]:
    """`variants.supervised_concepts`, with data_root optional.

    Without a data root only the refinement model's target_concepts can name them.
    """
    runtime = read_model_config(variants.model_dirs["refinement"]).get("runtime", {})
    if data_root is None and not runtime.get("target_concepts"):
        logger.warning("%s/config.json names no target_concepts and no data root was given: "
                       "the weak-concept rule (paper §4.4) is off",
                       variants.model_dirs["refinement"])
        return [], "none"
    # With target_concepts present, supervised_concepts does not read the data root.
    return supervised_concepts(variants, data_root or "", embeddings)


def load_concept_mask(models_dir: str, concepts_dir: str | None = None,
                      calibration: str | Mapping[str, Any] | None = None,
                      data_root: str | None = None, image_size: int | None = None
                      ) -> tuple[ConceptMask, ConceptEmbeddings, dict[str, Any]]:
    """Builds the full calibrated `ConceptMask` of a pipeline models folder.

    Args:
        models_dir: `<work_dir>/models` (embedding/, refinement/, segmentation/).
        concepts_dir: Word vectors; default `<models_dir>/../concepts`.
        calibration: report.json path or calibration entry (see `read_calibration`);
            default `<models_dir>/../report/report.json`. When that file or its entry is
            absent, or the calibration was skipped, a warning is logged and the model keeps
            its initial values (info["calibration"]["applied"] is False).
        data_root: Optional data root: its splits.json names the supervised concepts when
            the refinement model's config.json does not.
        image_size: S; default from the segmentation model's config.json.

    Returns:
        (model, embeddings, info) with info {"models_dir", "concepts_dir", "image_size",
        "attention_scales", "weak_attention", "embedding_dim", "vocabulary_size", "supervised_concepts",
        "supervised_source", "calibration": {"applied", "source", "threshold", "scale",
        "theta", and "reason" when not applied}}.

    Raises:
        FileNotFoundError: A required model dir, the word vectors or an explicitly given
            report is missing (the message names the path and what writes it).
        ValueError: Word vectors of another dimension than the models'.
        DataError: A malformed calibration entry.
    """
    concepts_dir = concepts_dir or default_concepts_dir(models_dir)
    require_concepts(concepts_dir)
    if not os.path.isdir(models_dir):
        raise FileNotFoundError(f"{models_dir} is not a directory: conceptmask-pipeline trains "
                                "the stages into <work_dir>/models")
    variants = load_variants(models_dir, image_size)
    embeddings = ConceptEmbeddings.load(concepts_dir)
    dim = variants.networks["refinement"].embedding.embedding_dim
    if embeddings.dim != dim:
        raise ValueError(f"word vectors in {concepts_dir} have dimension {embeddings.dim}, the "
                         f"models in {models_dir} {dim}: not the same concepts step")
    supervised, source = _supervised(variants, data_root, embeddings)
    model = variants.concept_mask("refinement", "segmentation",
                                  embeddings.vectors_for(supervised))
    values, where, reason = read_calibration(calibration, models_dir)
    if values is None:
        logger.warning("no calibration applied (%s): presence threshold, scale and theta keep "
                       "their initial values", reason)
    else:
        apply_calibration(model, values)
    info = {"models_dir": models_dir, "concepts_dir": concepts_dir,
            "image_size": variants.image_size, "attention_scales": list(variants.scales),
            "weak_attention": variants.weak_attention,
            "embedding_dim": dim, "vocabulary_size": len(embeddings.vocabulary),
            "supervised_concepts": supervised, "supervised_source": source,
            "calibration": {"applied": values is not None, "source": where,
                            **current_calibration(model),
                            **({"reason": reason} if values is None else {})}}
    return model, embeddings, info
