"""The evaluation report: `report.json` (DESIGN.md §5, a contract) and a human `report.md`.

`report.json` holds the attention-map metrics (paper Table 1), the segmentation metrics per
model variant and supervision split (paper Tables 2-3, §5.4 zero-shot), the presence metrics,
the config and the timings. `report.md` lays the same numbers out like the paper's tables, next
to the paper's published figures, with the acceptance targets and example pictures.

Metric values may be None (JSON null) when a split had nothing to score.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import tempfile
import types
from collections.abc import Mapping, Sequence
from typing import Any

from conceptmask_tf.data.layout import SPLITS

ATTENTION_VARIANTS = ("original", "original_finetuned", "refined_noneg", "refined")
ATTENTION_METRICS = ("pointing_game", "soft_iou")
SEGMENTATION_VARIANTS = ("full", "no_neg", "single_att", "concept_blind")
SEGMENTATION_METRICS = ("precision", "recall", "iou", "ap")
SEGMENTATION_COUNTS = ("concepts", "images")
PRESENCE_METRICS = ("cgf1", "il_mcc", "pm_f1")

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
NOT_MEASURED = "–"  # en dash

ATTENTION_LABELS = types.MappingProxyType({
    "original": "Original", "original_finetuned": "Original-Finetuned",
    "refined_noneg": "Refined-noNeg", "refined": "Refined"})
SEGMENTATION_LABELS = types.MappingProxyType({
    "full": "Full", "no_neg": "No-neg (Ours-noNeg)", "single_att": "Single-att (Ours-singleAtt)",
    "concept_blind": "Concept-blind (saliency stand-in)"})
SPLIT_LABELS = types.MappingProxyType({
    "strong": "strong (COCO-80)", "weak_box": "weak_box (Weak-Box-670)",
    "weak_image": "weak_image (Weak-Image-50)", "zero_shot": "zero_shot (unseen)"})

# The paper's published figures, as printed in its Tables 1-2 and §5.4 (for orientation only:
# different data, different scale).
PAPER_ATTENTION = types.MappingProxyType({
    "pointing_game": types.MappingProxyType({
        "original": 0.578, "original_finetuned": 0.631, "refined_noneg": 0.806, "refined": 0.810}),
    "soft_iou": types.MappingProxyType({
        "original": 0.262, "original_finetuned": 0.288, "refined_noneg": 0.416, "refined": 0.421}),
})
PAPER_IOU_OURS = types.MappingProxyType(
    {"strong": 0.402, "weak_box": 0.609, "weak_image": 0.412, "zero_shot": 0.436})
PAPER_IOU_SALIENCY = types.MappingProxyType(
    {"strong": 0.181, "weak_box": 0.307, "weak_image": 0.283, "zero_shot": 0.298})

# Acceptance targets (absolute thresholds).
TARGET_REFINED_POINTING_GAME = 0.8
TARGET_FULL_IOU = types.MappingProxyType({"strong": 0.70, "weak_box": 0.55, "weak_image": 0.45})
TARGET_ZERO_SHOT_GAIN = 0.10
_TOLERANCE = 1e-9  # so 0.5 - 0.4 counts as reaching 0.10


@dataclasses.dataclass(frozen=True)
class Picture:
    """An example picture shown in report.md.

    Attributes:
        path: Relative to the report's folder, e.g. "pictures/strong_dog.png".
        caption: One line shown as the image's alt text.
        group: Section it goes under, e.g. "objects", "parts", "stuff", "attributes", "weak",
            "unseen".
    """

    path: str
    caption: str
    group: str


# --------------------------------------------------------------------------- validation


def _required_schema() -> dict[str, Any]:
    """The required keys of a report; leaves say what a value must be ("number" or "count")."""
    attention = {v: {m: "number" for m in ATTENTION_METRICS} for v in ATTENTION_VARIANTS}
    split = {**{m: "number" for m in SEGMENTATION_METRICS}, **{c: "count" for c in SEGMENTATION_COUNTS}}
    segmentation = {v: {s: dict(split) for s in SPLITS} for v in SEGMENTATION_VARIANTS}
    return {
        "attention": attention,
        "segmentation": segmentation,
        "presence": {m: "number" for m in PRESENCE_METRICS},
        "config": "object",
        "timing_s": "timings",
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check(value: Any, schema: Any, path: str, problems: list[str]) -> None:
    if isinstance(schema, dict):
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected an object, got {_type_name(value)}")
            return
        for key, sub in schema.items():
            sub_path = f"{path}.{key}" if path else key
            if key not in value:
                problems.append(f"{sub_path}: missing")
            else:
                _check(value[key], sub, sub_path, problems)
    elif schema == "number":
        if value is not None and not _is_number(value):
            problems.append(f"{path}: expected a number or null, got {_type_name(value)} {value!r}")
    elif schema == "count":
        if not _is_count(value):
            problems.append(f"{path}: expected an int >= 0, got {_type_name(value)} {value!r}")
    elif schema == "object":
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected an object, got {_type_name(value)}")
    elif schema == "timings":
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected an object, got {_type_name(value)}")
            return
        for key, seconds in value.items():
            if seconds is not None and not _is_number(seconds):
                problems.append(f"{path}.{key}: expected seconds (a number or null), "
                                f"got {_type_name(seconds)} {seconds!r}")


def validate_report(report: Mapping[str, Any]) -> None:
    """Checks a report against the report.json contract (DESIGN.md §5).

    Metrics must be numbers (int or float; NaN allowed, written as null) or None; "concepts" and
    "images" ints >= 0; "config" an object; "timing_s" an object of seconds (numbers or None).
    Extra keys anywhere are allowed.

    Args:
        report: The report to check.

    Raises:
        ValueError: naming every missing or ill-typed key path, e.g.
            "segmentation.full.weak_box.iou: missing".
    """
    problems: list[str] = []
    _check(report, _required_schema(), "", problems)
    if problems:
        raise ValueError("invalid report: " + "; ".join(problems))


# --------------------------------------------------------------------------- writing


def _json_safe(value: Any, path: str) -> Any:
    """A copy of `value` with plain JSON types only; non-finite floats become None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{path}: cannot be written as JSON ({_type_name(value)} {value!r})")


def _write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(path) or "."
    handle, temp_path = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                         suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise


def write_report(report: Mapping[str, Any], out_dir: str,
                 pictures: Sequence[Picture] = ()) -> tuple[str, str]:
    """Validates the report and writes `report.json` and `report.md` into `out_dir`.

    Each file is written to a temporary file in `out_dir` and then renamed, so a reader never
    sees half a file. NaN and infinite values are written as null. Nothing is written when the
    report is invalid.

    Args:
        report: A report following DESIGN.md §5.
        out_dir: Folder to write into (created if missing).
        pictures: Example pictures for report.md; paths relative to `out_dir`.

    Returns:
        (path of report.json, path of report.md).

    Raises:
        ValueError: the report is invalid or holds a value JSON cannot represent.
    """
    validate_report(report)
    clean = _json_safe(report, "")
    json_text = json.dumps(clean, indent=1, allow_nan=False, ensure_ascii=False) + "\n"
    markdown = render_markdown(clean, pictures)
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, REPORT_JSON)
    md_path = os.path.join(out_dir, REPORT_MD)
    _write_atomically(json_path, json_text)
    _write_atomically(md_path, markdown)
    return json_path, md_path


# --------------------------------------------------------------------------- reading values


def _measured(value: Any) -> float | None:
    """The value as a float, or None when it was not measured (None or NaN)."""
    if value is None or not _is_number(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _attention(report: Mapping[str, Any], variant: str, metric: str) -> float | None:
    return _measured(report["attention"][variant][metric])


def _segmentation(report: Mapping[str, Any], variant: str, split: str,
                  metric: str = "iou") -> float | None:
    return _measured(report["segmentation"][variant][split][metric])


def mean_over_splits(report: Mapping[str, Any], variant: str, metric: str = "iou") -> float | None:
    """Mean of a segmentation metric over the splits where it was measured.

    Args:
        report: A valid report.
        variant: One of SEGMENTATION_VARIANTS.
        metric: One of SEGMENTATION_METRICS.

    Returns:
        The mean over splits whose value is not None (nor NaN); None if there is none.
    """
    values = [v for s in SPLITS if (v := _segmentation(report, variant, s, metric)) is not None]
    return sum(values) / len(values) if values else None


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# --------------------------------------------------------------------------- targets


def _fmt(value: Any, signed: bool = False) -> str:
    number = _measured(value)
    if number is None:
        return NOT_MEASURED
    return f"{number:+.3f}" if signed else f"{number:.3f}"


def _not_measured(*names: str) -> str:
    return "not measured (" + ", ".join(names) + " is null)"


def _beats(a: float | None, b: float | None, a_name: str, b_name: str,
           or_equal: bool = False) -> tuple[bool, str]:
    missing = [name for name, v in ((a_name, a), (b_name, b)) if v is None]
    if missing:
        return False, _not_measured(*missing)
    met = a >= b - _TOLERANCE if or_equal else a > b
    return met, f"{a_name} {a:.3f} vs {b_name} {b:.3f}"


def _at_least(value: float | None, threshold: float, name: str) -> tuple[bool, str]:
    if value is None:
        return False, _not_measured(name)
    return value >= threshold - _TOLERANCE, f"{name} {value:.3f} (target >= {threshold:.2f})"


def targets_check(report: Mapping[str, Any]) -> list[tuple[str, bool, str]]:
    """Reads the acceptance targets from a report.

    Args:
        report: A valid report.

    Returns:
        One (description, met, measured-value text) per target, in a fixed order. A target
        whose inputs were not measured (None or NaN) is not met and says so.
    """
    targets: list[tuple[str, bool, str]] = []
    for metric, label in (("pointing_game", "pointing game"), ("soft_iou", "soft IoU")):
        met, text = _beats(_attention(report, "refined", metric),
                           _attention(report, "original", metric), "refined", "original")
        targets.append((f"Refined beats Original on {label}", met, text))
    met, text = _at_least(_attention(report, "refined", "pointing_game"),
                          TARGET_REFINED_POINTING_GAME, "refined pointing game")
    targets.append((f"Refined pointing game >= {TARGET_REFINED_POINTING_GAME:.2f}", met, text))

    for split, threshold in TARGET_FULL_IOU.items():
        met, text = _at_least(_segmentation(report, "full", split), threshold, f"full IoU {split}")
        targets.append((f"Full IoU >= {threshold:.2f} on {split}", met, text))

    full_zs = _segmentation(report, "full", "zero_shot")
    blind_zs = _segmentation(report, "concept_blind", "zero_shot")
    gain = _difference(full_zs, blind_zs)
    if gain is None:
        met, text = False, _not_measured(*[name for name, v in (
            ("full IoU zero_shot", full_zs), ("concept_blind IoU zero_shot", blind_zs)) if v is None])
    else:
        met = gain >= TARGET_ZERO_SHOT_GAIN - _TOLERANCE
        text = f"{full_zs:.3f} - {blind_zs:.3f} = {gain:+.3f}"
    targets.append((f"Zero-shot: full IoU - concept_blind IoU >= {TARGET_ZERO_SHOT_GAIN:.2f}",
                    met, text))

    per_split = [(s, *_beats(_segmentation(report, "full", s),
                             _segmentation(report, "concept_blind", s), "full", "concept_blind"))
                 for s in SPLITS]
    targets.append(("Full beats concept_blind IoU on every split",
                    all(met for _, met, _ in per_split),
                    "; ".join(f"{s}: {text}" for s, _, text in per_split)))

    full_mean = mean_over_splits(report, "full")
    for variant in ("no_neg", "single_att"):
        met, text = _beats(full_mean, mean_over_splits(report, variant),
                           "full mean IoU", f"{variant} mean IoU", or_equal=True)
        targets.append((f"Full >= {variant} on mean IoU over splits", met, text))
    return targets


# --------------------------------------------------------------------------- markdown


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _attention_section(report: Mapping[str, Any]) -> list[str]:
    header = ["", *(ATTENTION_LABELS[v] for v in ATTENTION_VARIANTS)]
    rows = []
    for metric, label, paper_label in (("pointing_game", "Pointing game", "Pointing game"),
                                       ("soft_iou", "soft IoU", "IoU")):
        rows.append([label, *(_fmt(_attention(report, v, metric)) for v in ATTENTION_VARIANTS)])
        rows.append([f"{paper_label}, paper (OIVG-750)",
                     *(_fmt(PAPER_ATTENTION[metric][v]) for v in ATTENTION_VARIANTS)])
    return ["## Attention maps (weak_box split, paper Table 1)", "", *_table(header, rows)]


def _segmentation_section(report: Mapping[str, Any]) -> list[str]:
    header = ["Split", "Concepts", "Images", "Precision", "Recall", "IoU", "AP",
              "Concept-blind IoU", "IoU gain", "IoU, paper (Ours)", "IoU, paper (Saliency-DSS)"]
    rows = []
    for split in SPLITS:
        full = report["segmentation"]["full"][split]
        iou = _segmentation(report, "full", split)
        blind = _segmentation(report, "concept_blind", split)
        rows.append([SPLIT_LABELS[split], str(full["concepts"]), str(full["images"]),
                     *(_fmt(full[m]) for m in SEGMENTATION_METRICS), _fmt(blind),
                     _fmt(_difference(iou, blind), signed=True),
                     _fmt(PAPER_IOU_OURS[split]), _fmt(PAPER_IOU_SALIENCY[split])])
    note = ("Full model; masks binarized at 0.5, metrics averaged per concept then over concepts. "
            "Concept-blind = the segmentation network given a uniform attention map (a saliency "
            "stand-in only if that network segments salient regions without attention; one "
            "trained with guided attention predicts almost nothing from it). The paper's "
            "zero-shot figures are from §5.4.")
    return ["## Segmentation by supervision level (paper Table 2)", "", note, "",
            *_table(header, rows)]


def _ablation_section(report: Mapping[str, Any]) -> list[str]:
    header = ["Model", *SPLITS, "Mean over splits"]
    rows = [[SEGMENTATION_LABELS[v], *(_fmt(_segmentation(report, v, s)) for s in SPLITS),
             _fmt(mean_over_splits(report, v))] for v in ("full", "no_neg", "single_att")]
    note = "IoU per split; the mean is over the splits that were measured."
    return ["## Ablations (paper Table 3)", "", note, "", *_table(header, rows)]


def _zero_shot_section(report: Mapping[str, Any]) -> list[str]:
    full = _segmentation(report, "full", "zero_shot")
    blind = _segmentation(report, "concept_blind", "zero_shot")
    header = ["", "Full IoU", "Concept-blind IoU", "Difference"]
    rows = [["this run (zero_shot)", _fmt(full), _fmt(blind),
             _fmt(_difference(full, blind), signed=True)],
            ["paper §5.4 (10 unseen concepts; Saliency-DSS)", _fmt(PAPER_IOU_OURS["zero_shot"]),
             _fmt(PAPER_IOU_SALIENCY["zero_shot"]), NOT_MEASURED]]
    return ["## Zero-shot (paper §5.4)", "", *_table(header, rows)]


def _presence_section(report: Mapping[str, Any]) -> list[str]:
    presence = report["presence"]
    return ["## Concept presence", "",
            *_table(["cgF1", "IL_MCC", "pmF1"], [[_fmt(presence[m]) for m in PRESENCE_METRICS]])]


def _targets_section(report: Mapping[str, Any]) -> list[str]:
    rows = [[description, "✅ met" if met else "❌ NOT met", text]
            for description, met, text in targets_check(report)]
    return ["## Targets", "", *_table(["Target", "Status", "Measured"], rows)]


def _escape_caption(caption: str) -> str:
    return caption.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def _pictures_section(pictures: Sequence[Picture]) -> list[str]:
    if not pictures:
        return []
    groups: dict[str, list[Picture]] = {}
    for picture in pictures:
        groups.setdefault(picture.group, []).append(picture)
    lines = ["## Pictures", ""]
    for group, members in groups.items():
        lines += [f"### {group}", ""]
        for picture in members:
            path = picture.path.replace(os.sep, "/")
            lines += [f"![{_escape_caption(picture.caption)}]({path})", ""]
    return lines


def _timing_section(report: Mapping[str, Any]) -> list[str]:
    timings = report["timing_s"]
    if not timings:
        return ["## Timing", "", "No timings recorded.", ""]
    rows = [[str(name), NOT_MEASURED if _measured(s) is None else f"{float(s):.1f}"]
            for name, s in timings.items()]
    return ["## Timing", "", *_table(["Step", "Seconds"], rows)]


def _config_section(report: Mapping[str, Any]) -> list[str]:
    config = json.dumps(_json_safe(report["config"], "config"), indent=1, ensure_ascii=False)
    return ["## Config", "", "```json", config, "```", ""]


def render_markdown(report: Mapping[str, Any], pictures: Sequence[Picture] = ()) -> str:
    """Renders a report as Markdown laid out like the paper's tables.

    Sections: attention maps (Table 1, with the paper's figures), segmentation by supervision
    level (Table 2), ablations (Table 3, with a mean over splits), zero-shot (§5.4), presence,
    acceptance targets, pictures grouped by `Picture.group`, timings and the config. Metrics have
    3 decimals; values not measured show as "–".

    Args:
        report: A report following DESIGN.md §5.
        pictures: Example pictures; paths relative to the folder report.md is written to.

    Returns:
        The Markdown text.

    Raises:
        ValueError: the report is invalid.
    """
    validate_report(report)
    lines = ["# Concept Mask evaluation report", ""]
    lines += _attention_section(report)
    lines += _segmentation_section(report)
    lines += _ablation_section(report)
    lines += _zero_shot_section(report)
    lines += _presence_section(report)
    lines += _targets_section(report)
    lines += _pictures_section(pictures)
    lines += _timing_section(report)
    lines += _config_section(report)
    return "\n".join(lines)
