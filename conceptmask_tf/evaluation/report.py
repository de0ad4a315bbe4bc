"""The evaluation report: `report.json` (DESIGN.md §5, a contract) and a human `report.md`.

`report.json` says which split it scored ("test" = eval/, "val" = val/) and holds the
attention-map metrics (paper Table 1), the segmentation metrics per model variant and
supervision split (paper Tables 2-3, §5.4 zero-shot) with the `saliency` baseline and the
`oracle_attention` ceiling, the presence metrics, the config and the timings. `report.md`
lays the same numbers out like the paper's tables, next to the paper's published figures,
with example pictures. (The concept world's acceptance checks read report.json from
`benchmarks/world_targets.py`; they are the project's, not a user's.)

Metric values may be None (JSON null) when a split had nothing to score.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import types
from collections.abc import Mapping, Sequence
from typing import Any

from conceptmask_tf.base import files
from conceptmask_tf.data.layout import SPLITS

ATTENTION_VARIANTS = ("original", "original_finetuned", "refined_noneg", "refined")
# The paper's protocol first (boxes, maps as output), then the mask-based extra columns.
ATTENTION_METRICS = ("pointing_game", "soft_iou", "pointing_game_mask", "soft_iou_mask",
                     "soft_iou_mask_minmax")
SEGMENTATION_VARIANTS = ("full", "no_neg", "single_att", "saliency", "oracle_attention")
SEGMENTATION_METRICS = ("precision", "recall", "iou", "ap")
SEGMENTATION_COUNTS = ("concepts", "images")
PRESENCE_METRICS = ("cgf1", "il_mcc", "pm_f1")
REPORT_SPLITS = ("test", "val")

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
NOT_MEASURED = "–"  # en dash

ATTENTION_LABELS = types.MappingProxyType({
    "original": "Original", "original_finetuned": "Original-Finetuned",
    "refined_noneg": "Refined-noNeg", "refined": "Refined"})
ATTENTION_METRIC_LABELS = types.MappingProxyType({
    "pointing_game": "Pointing game (boxes)",
    "soft_iou": "soft IoU (boxes, eq. 5)",
    "pointing_game_mask": "Pointing game (masks)",
    "soft_iou_mask": "soft IoU (masks)",
    "soft_iou_mask_minmax": "soft IoU (masks, min-max maps)"})
SEGMENTATION_LABELS = types.MappingProxyType({
    "full": "Ours (full model)", "no_neg": "Ours-noNeg", "single_att": "Ours-singleAtt",
    "saliency": "Saliency (concept-blind baseline)",
    "oracle_attention": "Oracle attention (ceiling)"})
SPLIT_LABELS = types.MappingProxyType({
    "strong": "strong (COCO-80)", "weak_box": "weak_box (Weak-Box-670)",
    "weak_image": "weak_image (Weak-Image-50)", "zero_shot": "zero_shot (unseen)"})

# The paper's published figures, as printed in its Tables 1-3 and §5.4 (for orientation only:
# different data, different scale). Table 1 is on OIVG-750; Tables 2-3 on COCO-80,
# Weak-Box-670, Weak-Image-50; §5.4 on 10 unseen concepts (IoU only).
PAPER_ATTENTION = types.MappingProxyType({
    "pointing_game": types.MappingProxyType({
        "original": 0.578, "original_finetuned": 0.631, "refined_noneg": 0.806, "refined": 0.810}),
    "soft_iou": types.MappingProxyType({
        "original": 0.262, "original_finetuned": 0.288, "refined_noneg": 0.416, "refined": 0.421}),
})
PAPER_SEGMENTATION = types.MappingProxyType({  # (precision, recall, IoU); None: not given
    "full": types.MappingProxyType({
        "strong": (0.656, 0.722, 0.402), "weak_box": (0.741, 0.800, 0.609),
        "weak_image": (0.580, 0.539, 0.412), "zero_shot": (None, None, 0.436)}),
    "saliency": types.MappingProxyType({  # Saliency-DSS
        "strong": (0.286, 0.492, 0.181), "weak_box": (0.592, 0.407, 0.307),
        "weak_image": (0.387, 0.493, 0.283), "zero_shot": (None, None, 0.298)}),
    "no_neg": types.MappingProxyType({
        "strong": (None, None, 0.395), "weak_box": (None, None, 0.594),
        "weak_image": (None, None, 0.356)}),
    "single_att": types.MappingProxyType({
        "strong": (None, None, 0.363), "weak_box": (None, None, 0.599),
        "weak_image": (None, None, 0.390)}),
})
PAPER_MODEL_LABELS = types.MappingProxyType({"full": "Ours", "saliency": "Saliency-DSS",
                                             "no_neg": "Ours-noNeg",
                                             "single_att": "Ours-singleAtt"})


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
    """The required keys of a report; leaves say what a value must be ("number", "count",
    "split", "object" or "timings")."""
    attention = {v: {m: "number" for m in ATTENTION_METRICS} for v in ATTENTION_VARIANTS}
    split = {**{m: "number" for m in SEGMENTATION_METRICS}, **{c: "count" for c in SEGMENTATION_COUNTS}}
    segmentation = {v: {s: dict(split) for s in SPLITS} for v in SEGMENTATION_VARIANTS}
    return {
        "split": "split",
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
    elif schema == "split":
        if value not in REPORT_SPLITS:
            problems.append(f"{path}: expected one of {REPORT_SPLITS}, got {value!r}")
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
    "images" ints >= 0; "split" "test" or "val"; "config" an object; "timing_s" an object of
    seconds (numbers or None). Extra keys are allowed, but for the retired "concept_blind" row.

    Args:
        report: The report to check.

    Raises:
        ValueError: naming every missing or ill-typed key path, e.g.
            "segmentation.full.weak_box.iou: missing".
    """
    problems: list[str] = []
    _check(report, _required_schema(), "", problems)
    segmentation = report.get("segmentation")
    if isinstance(segmentation, Mapping) and "concept_blind" in segmentation:
        problems.append("segmentation.concept_blind: a report written before 2026-12; its "
                        "degenerate concept-blind row is replaced by saliency and "
                        "oracle_attention (re-run conceptmask-evaluate)")
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
    files.makedirs(out_dir)
    json_path = os.path.join(out_dir, REPORT_JSON)
    md_path = os.path.join(out_dir, REPORT_MD)
    files.write_atomically(json_path, json_text)
    files.write_atomically(md_path, markdown)
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


def _fmt(value: Any, signed: bool = False) -> str:
    number = _measured(value)
    if number is None:
        return NOT_MEASURED
    return f"{number:+.3f}" if signed else f"{number:.3f}"


# --------------------------------------------------------------------------- markdown


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _split_line(report: Mapping[str, Any]) -> list[str]:
    if report["split"] == "test":
        return [("Scored on the **test** split (`eval/<split>.json`); presence and the "
                 "weak-concept θ were calibrated on the validation split (`val/`)."), ""]
    return [("Scored on the **validation** split (`val/<split>.json`): figures for choosing "
             "settings, not for reporting (score the test split for those)."), ""]


def _attention_section(report: Mapping[str, Any]) -> list[str]:
    header = ["", *(ATTENTION_LABELS[v] for v in ATTENTION_VARIANTS)]
    rows = []
    for metric in ATTENTION_METRICS:
        rows.append([ATTENTION_METRIC_LABELS[metric],
                     *(_fmt(_attention(report, v, metric)) for v in ATTENTION_VARIANTS)])
        if metric in PAPER_ATTENTION:
            rows.append([f"{ATTENTION_METRIC_LABELS[metric]}, paper (OIVG-750)",
                         *(_fmt(PAPER_ATTENTION[metric][v]) for v in ATTENTION_VARIANTS)])
    note = ("The paper's protocol: pointing game and soft IoU (eq. 5) against the "
            "ground-truth boxes, on the maps as the networks output them (refined: sigmoid "
            "probabilities; Original and Original-Finetuned: cosine clipped to [0, 1]). The "
            "mask rows score the same maps against the exact masks; the last row min-max "
            "normalises each map first (what the segmentation network sees).")
    return ["## Attention maps (weak_box concepts, paper Table 1)", "", note, "",
            *_table(header, rows)]


def _paper_cells(variant: str, split: str) -> list[str]:
    values = PAPER_SEGMENTATION.get(variant, {}).get(split, (None, None, None))
    return [_fmt(v) for v in values]


def _segmentation_section(report: Mapping[str, Any]) -> list[str]:
    header = ["Split", "Model", "Concepts", "Images", "Precision", "Recall", "IoU", "AP",
              "Paper model", "Paper precision", "Paper recall", "Paper IoU"]
    rows = []
    for split in SPLITS:
        for variant in ("full", "saliency", "oracle_attention"):
            entry = report["segmentation"][variant][split]
            paper = PAPER_MODEL_LABELS.get(variant, NOT_MEASURED)
            rows.append([SPLIT_LABELS[split], SEGMENTATION_LABELS[variant],
                         str(entry["concepts"]), str(entry["images"]),
                         *(_fmt(entry[m]) for m in SEGMENTATION_METRICS), paper,
                         *_paper_cells(variant, split)])
    note = ("Masks binarized at 0.5; precision, recall and IoU per (image, concept), averaged "
            "per concept, then over concepts (paper §5.3); AP over all pixels. Saliency is a "
            "concept-blind foreground network of the segmentation architecture trained on the "
            "same images (the paper used Saliency-DSS); oracle attention gives the "
            "segmentation network attention made from the ground-truth mask, the ceiling "
            "of the attention stages. The paper's zero-shot figures are from §5.4 (IoU only).")
    return ["## Segmentation by supervision level (paper Table 2)", "", note, "",
            *_table(header, rows)]


def _ablation_section(report: Mapping[str, Any]) -> list[str]:
    header = ["Model", *SPLITS, "Mean over splits", "Paper: COCO-80", "Weak-Box-670",
              "Weak-Image-50"]
    rows = [[SEGMENTATION_LABELS[v], *(_fmt(_segmentation(report, v, s)) for s in SPLITS),
             _fmt(mean_over_splits(report, v)),
             *(_paper_cells(v, s)[2] for s in ("strong", "weak_box", "weak_image"))]
            for v in ("full", "no_neg", "single_att")]
    note = "IoU per split; the mean is over the splits that were measured."
    return ["## Ablations (paper Table 3)", "", note, "", *_table(header, rows)]


def _zero_shot_section(report: Mapping[str, Any]) -> list[str]:
    full = _segmentation(report, "full", "zero_shot")
    saliency = _segmentation(report, "saliency", "zero_shot")
    oracle = _segmentation(report, "oracle_attention", "zero_shot")
    header = ["", "Ours IoU", "Saliency IoU", "Difference", "Oracle attention IoU"]
    rows = [["this run (zero_shot)", _fmt(full), _fmt(saliency),
             _fmt(_difference(full, saliency), signed=True), _fmt(oracle)],
            ["paper §5.4 (10 unseen concepts; Saliency-DSS)",
             _fmt(PAPER_SEGMENTATION["full"]["zero_shot"][2]),
             _fmt(PAPER_SEGMENTATION["saliency"]["zero_shot"][2]),
             _fmt(PAPER_SEGMENTATION["full"]["zero_shot"][2]
                  - PAPER_SEGMENTATION["saliency"]["zero_shot"][2], signed=True),
             NOT_MEASURED]]
    return ["## Zero-shot (paper §5.4)", "", *_table(header, rows)]


def _presence_section(report: Mapping[str, Any]) -> list[str]:
    presence = report["presence"]
    return ["## Concept presence", "",
            *_table(["cgF1", "IL_MCC", "pmF1"], [[_fmt(presence[m]) for m in PRESENCE_METRICS]])]


def _specificity_section(report: Mapping[str, Any]) -> list[str]:
    specificity = report.get("specificity") or {}
    if not specificity.get("pairs"):
        return []
    variants = [v for v in ATTENTION_VARIANTS if v in specificity]
    rows = [["all pairs", str(specificity["pairs"]),
             *(_fmt(specificity[v]["own_region"]) for v in variants)],
            ["pairs with alike word vectors (cosine >= 0.5)", str(specificity["similar_pairs"]),
             *(_fmt(specificity[v]["own_region_similar"]) for v in variants)]]
    note = ("For every image and ordered pair (a, b) of concepts present in it whose ground "
            "truths do not overlap: the fraction where a's map is higher on a's region than "
            "on b's (1 = always its own, 0.5 = chance). Mean word-vector cosine of the pairs: "
            f"{_fmt(specificity.get('mean_cosine'))}.")
    return ["## Concept specificity of the attention maps", "", note, "",
            *_table(["Pairs", "Number", *(ATTENTION_LABELS[v] for v in variants)], rows)]


def _per_concept_section(report: Mapping[str, Any]) -> list[str]:
    """Mean IoU per kind of concept, then one row per concept (worst first within a kind)."""
    rows = report.get("per_concept") or {}
    if not any(rows.values()):
        return []
    kinds = sorted({row.get("kind") or "–" for split_rows in rows.values() for row in split_rows})
    by_kind = []
    for kind in kinds:
        cells = []
        for split in SPLITS:
            values = [_measured(row["iou"].get("full")) for row in rows.get(split, ())
                      if (row.get("kind") or "–") == kind]
            values = [v for v in values if v is not None]
            cells.append(f"{sum(values) / len(values):.3f} ({len(values)})" if values
                         else NOT_MEASURED)
        by_kind.append([kind, *cells])
    lines = ["## Per concept", "",
             "Mean full-model IoU over the concepts of each kind (their number in brackets):",
             "", *_table(["Kind", *SPLITS], by_kind)]
    header = ["Split", "Concept", "Kind", "Images", "IoU", "Saliency IoU", "Oracle IoU",
              "Pointing game, Refined", "Pointing game, Original", "Word vector"]
    table = []
    for split in SPLITS:
        ordered = sorted(rows.get(split, ()), key=lambda r: (
            r.get("kind") or "", _measured(r["iou"].get("full")) or 0.0, r["concept"]))
        for row in ordered:
            table.append([split, row["concept"], row.get("kind") or NOT_MEASURED,
                          str(row["images"]), _fmt(row["iou"].get("full")),
                          _fmt(row["iou"].get("saliency")),
                          _fmt(row["iou"].get("oracle_attention")),
                          _fmt(row["pointing_game"].get("refined")),
                          _fmt(row["pointing_game"].get("original")),
                          row.get("vector") or ""])
    note = ("Pointing game against the boxes (Table 1's protocol). Word vector: a zero vector, "
            "or the concepts whose vectors are near-identical to this one's "
            "(`vector_diagnostics.json` of conceptmask-concepts): no stage can tell those "
            "apart.")
    return [*lines, note, "", *_table(header, table)]


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

    Sections: the split scored, attention maps (Table 1), segmentation by supervision level
    with the saliency baseline and the oracle-attention ceiling (Table 2), ablations (Table 3,
    with a mean over splits), zero-shot (§5.4), presence, per concept (when the report has
    "per_concept" rows), pictures grouped by `Picture.group`, timings and the config; the paper's figures next to this run's. Metrics
    have 3 decimals; values not measured show as "–".

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
    lines += _split_line(report)
    lines += _attention_section(report)
    lines += _segmentation_section(report)
    lines += _ablation_section(report)
    lines += _zero_shot_section(report)
    lines += _presence_section(report)
    lines += _specificity_section(report)
    lines += _per_concept_section(report)
    lines += _pictures_section(pictures)
    lines += _timing_section(report)
    lines += _config_section(report)
    return "\n".join(lines)
