"""Evaluation: metrics, split evaluation of the model variants, report tables, pictures.

`evaluate` runs everything on a trained work dir and writes report.json / report.md /
pictures (DESIGN.md §5); the smaller pieces are usable on their own.

`report` is plain numpy; the names below that run models import
TensorFlow, so they are loaded on first use (importing `conceptmask_tf.evaluation.report`
stays light).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "attention_evaluation": ("as_probability", "evaluate_attention", "unit_range"),
    "eval_set": ("EvalImage", "EvalPair", "EvalSet", "load_eval_set", "make_batches",
                 "pad_concepts"),
    "evaluator": ("assemble_report", "evaluate", "summary"),
    "pictures": ("PictureChoice", "choose_pictures", "write_pictures"),
    "predictors": ("AttentionMaps", "OracleAttention", "Predictor",
                   "SaliencyMasks", "compiled", "predict_pairs", "presence_model",
                   "run_batch"),
    "segmentation_evaluation": ("SegmentationResult", "evaluate_segmentation"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "AttentionMaps", "EvalImage", "EvalPair", "EvalSet", "OracleAttention", "PictureChoice", "Predictor", "SaliencyMasks",
    "SegmentationResult", "as_probability", "assemble_report",
    "choose_pictures", "compiled", "evaluate",
    "evaluate_attention", "evaluate_segmentation", "load_eval_set",
    "make_batches", "pad_concepts", "predict_pairs", "presence_model", "run_batch", "summary",
    "unit_range", "write_pictures",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
