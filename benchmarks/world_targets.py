"""The project's acceptance checks on the concept world, read from a report.json.

These targets were set for the built-in concept world (issue 4, revised in issue 12); they
are the project's yardstick, not part of a user's report. Comparisons are against the
`saliency` baseline (a trained concept-blind foreground network), never against a
degenerate input. The report must have scored the test split: a figure read from a
validation report may have chosen a setting.

    python benchmarks/world_targets.py conceptmask_demo/report/report.json
    python benchmarks/world_targets.py W/report/report.json --json targets.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from conceptmask_tf.data.layout import SPLITS
from conceptmask_tf.evaluation.report import mean_over_splits, validate_report

TARGET_REFINED_POINTING_GAME = 0.8
TARGET_FULL_IOU = {"strong": 0.70, "weak_box": 0.55, "weak_image": 0.45}
TARGET_ZERO_SHOT_GAIN = 0.10
_TOLERANCE = 1e-9  # so 0.5 - 0.4 counts as reaching 0.10


def _value(report: Mapping[str, Any], *path: str) -> float | None:
    """The number at `path`, or None when it was not measured (null or NaN)."""
    value: Any = report
    for key in path:
        value = value[key]
    return None if value is None or not math.isfinite(value) else float(value)


def _compare(a: float | None, b: float | None, a_name: str, b_name: str,
             at_least: bool = False) -> tuple[bool, str]:
    missing = [name for name, v in ((a_name, a), (b_name, b)) if v is None]
    if missing:
        return False, "not measured (" + ", ".join(missing) + " is null)"
    met = a >= b - _TOLERANCE if at_least else a > b
    return met, f"{a_name} {a:.3f} vs {b_name} {b:.3f}"


def targets_check(report: Mapping[str, Any]) -> list[tuple[str, bool, str]]:
    """One (description, met, measured values) per target, in a fixed order.

    A target whose inputs were not measured (null) is not met and says so.

    Raises:
        ValueError: The report is invalid (`validate_report`).
    """
    validate_report(report)
    targets = []
    for metric in ("pointing_game", "soft_iou"):
        met, text = _compare(_value(report, "attention", "refined", metric),
                             _value(report, "attention", "original", metric),
                             "refined", "original")
        targets.append((f"Refined beats Original on {metric} (boxes, Table 1)", met, text))
    met, text = _compare(_value(report, "attention", "refined", "pointing_game"),
                         TARGET_REFINED_POINTING_GAME, "refined pointing game", "target",
                         at_least=True)
    targets.append((f"Refined pointing game >= {TARGET_REFINED_POINTING_GAME:.2f}", met, text))
    for split, threshold in TARGET_FULL_IOU.items():
        met, text = _compare(_value(report, "segmentation", "full", split, "iou"), threshold,
                             f"full IoU {split}", "target", at_least=True)
        targets.append((f"Full IoU >= {threshold:.2f} on {split}", met, text))
    full_zs = _value(report, "segmentation", "full", "zero_shot", "iou")
    saliency_zs = _value(report, "segmentation", "saliency", "zero_shot", "iou")
    gain = None if full_zs is None or saliency_zs is None else full_zs - saliency_zs
    met, text = _compare(gain, TARGET_ZERO_SHOT_GAIN, "zero-shot full - saliency IoU",
                         "target", at_least=True)
    targets.append((f"Zero-shot: full IoU - saliency IoU >= {TARGET_ZERO_SHOT_GAIN:.2f}",
                    met, text))
    per_split = [(s, *_compare(_value(report, "segmentation", "full", s, "iou"),
                               _value(report, "segmentation", "saliency", s, "iou"),
                               "full", "saliency")) for s in SPLITS]
    targets.append(("Full beats saliency IoU on every split",
                    all(met for _, met, _ in per_split),
                    "; ".join(f"{s}: {text}" for s, _, text in per_split)))
    full_mean = mean_over_splits(report, "full")
    for variant in ("no_neg", "single_att"):
        met, text = _compare(full_mean, mean_over_splits(report, variant), "full mean IoU",
                             f"{variant} mean IoU", at_least=True)
        targets.append((f"Full >= {variant} on mean IoU over splits", met, text))
    return targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="report.json of conceptmask-evaluate / -pipeline / -demo")
    parser.add_argument("--json", help="also write the checks here")
    args = parser.parse_args()
    with open(args.report, encoding="utf-8") as f:
        report = json.load(f)
    if report.get("split") != "test":
        print(f"{args.report} scored the {report.get('split')!r} split: acceptance figures "
              "come from the test split (conceptmask-evaluate --split=test)", file=sys.stderr)
        return 2
    targets = targets_check(report)
    for description, met, text in targets:
        print(f"{'met    ' if met else 'NOT met'}  {description}: {text}")
    print(f"{sum(met for _, met, _ in targets)} of {len(targets)} targets met "
          f"(oracle-attention IoU, the ceiling: " + ", ".join(
              f"{s} {_format(_value(report, 'segmentation', 'oracle_attention', s, 'iou'))}"
              for s in SPLITS) + ")")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([{"target": d, "met": m, "measured": t} for d, m, t in targets], f,
                      indent=1)
    return 0


def _format(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
