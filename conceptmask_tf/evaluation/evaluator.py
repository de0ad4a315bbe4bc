"""`evaluate`: a models folder + a data root -> report.json, report.md and pictures.

Steps (DESIGN.md §5):
  1. Load the networks (`assembly.load_stage_networks`), the full model (the saved
     `<work_dir>/concept_mask` that `conceptmask-assemble` wrote, with its word vectors
     and calibration; without one it is assembled and calibrated on `val/<split>.json`
     here, `assembly.ConceptMaskSegmenter.assemble`) and the ground truth of every split
     of the scored set (`eval_set.load_eval_set`, pairs merged per image): the test set
     `eval/<split>.json` (split="test", for reported figures) or the validation set
     `val/<split>.json` (split="val", for every choice).
  2. The calibration (presence threshold/slope and the weak-concept theta, paper §4.4)
     is the full model's; the no_neg and single_att models reuse its theta; their
     presence is not reported, so it is not calibrated.
  3. Attention maps (paper Table 1, `attention_evaluation`: against the ground-truth
     boxes as the paper scores them, plus mask-based columns) on every split;
     `report["attention"]` is weak_box (the paper's OIVG-750 box-supervised concepts),
     the rest under "attention_by_split"; and their specificity (`concept_specificity`:
     does a concept's map peak in its own region rather than in another present concept's).
  4. Segmentation (paper Tables 2-3) of each variant on every split:
       full              ConceptMask(refinement, segmentation), the segmentation config's
                         scales and weak_attention (every variant composes the same way);
       no_neg            ConceptMask(refinement_no_neg, segmentation): the stage-3 network
                         is label agnostic (it sees attention maps only), so the full
                         model's one is reused rather than retrained on the no_neg attention;
       single_att        ConceptMask(refinement, segmentation_single_att), its one scale;
       saliency          the saliency baseline (`training.saliency`, a concept-blind
                         foreground network): one mask per image for every concept;
       oracle_attention  the full model's segmentation network given attention made from
                         the ground-truth mask (`predictors.OracleAttention`): the ceiling of
                         the attention stages.
     Presence (`metrics.PresenceF1`) of the full model over all splits' present and
     verified-absent pairs.
  5. Example pictures of the full model (`pictures`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from conceptmask_tf.assembly.segmenter import (
    ConceptMaskSegmenter,
    default_concepts_dir,
    default_segmenter_dir,
    is_saved_segmenter,
)
from conceptmask_tf.assembly.stage_networks import StageNetworks, load_stage_networks
from conceptmask_tf.base import files
from conceptmask_tf.concepts.diagnostics import concept_flags, load_diagnostics
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings, require_concepts
from conceptmask_tf.data.layout import SPLITS
from conceptmask_tf.evaluation import report as report_lib
from conceptmask_tf.evaluation.attention_evaluation import (
    concept_specificity,
    evaluate_attention,
    null_attention,
)
from conceptmask_tf.evaluation.eval_set import EvalSet, load_eval_set
from conceptmask_tf.evaluation.pictures import choose_pictures, write_pictures
from conceptmask_tf.evaluation.predictors import (
    AttentionMaps,
    OracleAttention,
    SaliencyMasks,
    compiled,
    presence_model,
)
from conceptmask_tf.evaluation.report import Picture
from conceptmask_tf.evaluation.segmentation_evaluation import (
    evaluate_segmentation,
    null_presence,
    null_segmentation,
)
from conceptmask_tf.models import ConceptMask

logger = logging.getLogger(__name__)

ATTENTION_SPLIT = "weak_box"
CALIBRATION_SPLITS = ("strong", "weak_box", "weak_image")
SCORED_SPLITS = {"test": "eval", "val": "val"}  # report "split" -> data-root folder
ORACLE_BLUR_SIGMA = 1.0  # attention-map cells (OracleAttention)


def _segmentation_models(variants: StageNetworks, full: ConceptMask,
                         supervised_vectors: Any) -> dict[str, Any | None]:
    """Variant name -> the callable to evaluate (None when its network is missing)."""
    models: dict[str, Any | None] = {"full": full, "no_neg": None, "single_att": None,
                                     "saliency": None}
    if variants.has("refinement_no_neg"):
        models["no_neg"] = variants.concept_mask("refinement_no_neg", "segmentation",
                                                 supervised_vectors, full.weak_theta)
    if variants.has("segmentation_single_att"):
        models["single_att"] = variants.concept_mask("refinement", "segmentation_single_att",
                                                     supervised_vectors, full.weak_theta)
    if variants.has("saliency"):
        models["saliency"] = SaliencyMasks(variants.networks["saliency"],
                                           variants.saliency_image_size or variants.image_size)
    models["oracle_attention"] = OracleAttention(
        variants.networks["segmentation"], variants.image_size,
        variants.attention_sides(variants.scales), ORACLE_BLUR_SIGMA)
    return models


def _evaluate_segmentation_variants(models: Mapping[str, Any | None], full_predictor: Any,
                                    presence_predictor: Any, eval_set: EvalSet, dim: int,
                                    batch_size: int, progress: bool,
                                    timing: dict[str, float | None]
                                    ) -> tuple[dict[str, dict[str, Any]], dict[str, Any],
                                               dict[str, dict[str, Any]]]:
    """Segmentation metrics of every variant, the full model's presence, and per concept.

    A missing variant (None) gets null metrics; each variant's seconds go into `timing`.

    Returns:
        (variant -> split -> metrics, presence, variant -> split -> concept -> metrics).
    """
    segmentation: dict[str, dict[str, Any]] = {}
    per_concept: dict[str, dict[str, Any]] = {}
    presence = null_presence()
    for name, model in models.items():
        if model is None:
            segmentation[name] = {s: null_segmentation() for s in SPLITS}
            timing[f"segmentation_{name}"] = None
            continue
        phase = time.perf_counter()
        is_full = name == "full"
        with_truth = isinstance(model, OracleAttention)
        result = evaluate_segmentation(
            full_predictor if is_full else compiled(model, dim, with_truth), eval_set,
            presence=is_full, presence_predict=presence_predictor, batch_size=batch_size,
            progress=progress, desc=f"segmentation {name}", with_truth=with_truth)
        segmentation[name] = result.by_split
        per_concept[name] = result.per_concept
        if result.presence is not None:
            presence = result.presence
        timing[f"segmentation_{name}"] = time.perf_counter() - phase
    return segmentation, presence, per_concept


def evaluate(models_dir: str, data_root: str, out_dir: str, concepts_dir: str | None = None,
             max_images: int | None = None, calibration_images: int | None = 40,
             batch_size: int = 16, pictures_per_group: int = 2, image_size: int | None = None,
             progress: bool = True, split: str = "test",
             segmenter_dir: str | None = None) -> dict[str, Any]:
    """Evaluates a trained work dir and writes report.json, report.md and pictures/.

    Args:
        models_dir: The models folder (`<work_dir>/models`, DESIGN.md §4).
        data_root: Data root with `eval/<split>.json` and/or `val/<split>.json` (the
            validation files also calibrate).
        out_dir: Report folder (created).
        concepts_dir: Word vectors; default `<models_dir>/../concepts`.
        max_images: Images per split (first in file order; None: all).
        calibration_images: Validation images per split for calibration when the full
            model is assembled here (None: all; 0: no calibration); a saved model keeps
            its own calibration.
        batch_size: Most images per model call.
        pictures_per_group: Example pictures per group.
        image_size: S; default from the segmentation model's config.json.
        progress: Progress bars on stderr.
        split: Which set is scored: "test" (`eval/`, the reported figures) or "val"
            (`val/`, for choosing settings; calibration also uses it).
        segmenter_dir: The saved full model; default `<models_dir>/../concept_mask` when
            it exists, else the full model is assembled and calibrated here.

    Returns:
        The report (DESIGN.md §5) as written to report.json, plus "missing" (absent optional
        model dirs and eval files), "skipped", "calibration", "attention_by_split" and
        "pictures" (see `assemble_report`).

    Raises:
        FileNotFoundError: A required model dir or the word vectors are missing.
        DataError: No ground-truth file of the scored set exists, or one is malformed.
        ValueError: An unknown split, or word vectors of another dimension than the models'.
    """
    if split not in SCORED_SPLITS:
        raise ValueError(f"split must be one of {tuple(SCORED_SPLITS)}, got {split!r}")
    start = time.perf_counter()
    timing: dict[str, float | None] = {}
    concepts_dir = concepts_dir or default_concepts_dir(models_dir)
    variants = load_stage_networks(models_dir, image_size)
    segmenter_dir = segmenter_dir or default_segmenter_dir(models_dir)
    if is_saved_segmenter(segmenter_dir):
        segmenter = ConceptMaskSegmenter.from_preset(segmenter_dir)
        if segmenter.image_size != variants.image_size:
            raise ValueError(f"{segmenter_dir} works at image size {segmenter.image_size}, the "
                             f"models in {models_dir} at {variants.image_size}: assemble it "
                             "again (conceptmask-assemble)")
        timing["load"] = time.perf_counter() - start
        timing["calibration"] = None
    else:
        require_concepts(concepts_dir)
        logger.info("%s does not exist: assembling the full model", segmenter_dir)
        segmenter = ConceptMaskSegmenter.from_stage_networks(
            variants, ConceptEmbeddings.load(concepts_dir), data_root)
        timing["load"] = time.perf_counter() - start
        phase = time.perf_counter()
        logger.info("calibrating the full model on validation data")
        segmenter.calibrate(data_root, concepts_dir, calibration_images)
        segmenter_dir = None
        timing["calibration"] = time.perf_counter() - phase
    embeddings = segmenter.embeddings
    model_dim = embeddings.dim
    eval_set = load_eval_set(data_root, embeddings, max_images=max_images,
                             which=SCORED_SPLITS[split])
    full = segmenter.model
    supervised = segmenter.supervised_concepts
    supervised_vectors = embeddings.vectors_for(supervised)
    calibration = segmenter.calibration

    phase = time.perf_counter()
    maps = AttentionMaps(variants.fully_convolutional_embedding(),
                         variants.networks["refinement"],
                         variants.networks.get("refinement_no_neg"), variants.image_size)
    attention_predictor = compiled(maps, model_dim)
    attention_by_split = evaluate_attention(attention_predictor, eval_set, maps.variants,
                                            batch_size=batch_size, progress=progress)
    specificity = concept_specificity(attention_predictor, eval_set, maps.variants,
                                      batch_size=batch_size, progress=progress)
    timing["attention"] = time.perf_counter() - phase

    full_predictor = compiled(full, model_dim)
    segmentation, presence, segmentation_per_concept = _evaluate_segmentation_variants(
        _segmentation_models(variants, full, supervised_vectors), full_predictor,
        compiled(presence_model(full), model_dim), eval_set, model_dim, batch_size, progress,
        timing)

    phase = time.perf_counter()
    pictures = write_pictures(full_predictor, eval_set,
                              choose_pictures(eval_set, pictures_per_group), out_dir)
    timing["pictures"] = time.perf_counter() - phase
    timing["total"] = time.perf_counter() - start

    config = {"split": split, "ground_truth": f"{SCORED_SPLITS[split]}/<split>.json",
              "models_dir": models_dir, "data_root": data_root, "concepts_dir": concepts_dir,
              "model_dirs": variants.model_dirs, "segmenter_dir": segmenter_dir,
              "image_size": variants.image_size,
              "scales": list(variants.scales),
              "single_att_scales": list(variants.single_att_scales),
              "max_images": max_images, "calibration_images": calibration_images,
              "batch_size": batch_size, "splits": list(eval_set.splits),
              "supervised_concepts": len(supervised),
              "supervised_source": segmenter.source.get("supervised_source"),
              "attention_split": ATTENTION_SPLIT,
              "attention_protocol": "pointing_game, soft_iou: against the ground-truth boxes; "
                                    "_mask: against the masks; maps as output (refined: "
                                    "sigmoid; coarse: cosine clipped to [0, 1]), "
                                    "soft_iou_mask_minmax on min-max normalised maps",
              "oracle_blur_sigma": ORACLE_BLUR_SIGMA,
              "mask_threshold": 0.5, "presence_threshold": 0.5}
    report = assemble_report(attention_by_split, segmentation, presence, calibration, config,
                             timing, missing=[*variants.missing, *(
                                 f"{SCORED_SPLITS[split]}/{s}.json"
                                 for s in eval_set.missing_splits)],
                             skipped={"unknown_concepts": dict(eval_set.unknown_concepts),
                                      "records": eval_set.skips.as_dict()},
                             pictures=pictures,
                             per_concept=per_concept_rows(
                                 attention_by_split, segmentation_per_concept,
                                 eval_set.supercategories,
                                 concept_flags(load_diagnostics(concepts_dir) or {})),
                             specificity=specificity)
    report_lib.write_report(report, out_dir, pictures)
    return report


def per_concept_rows(attention_by_split: Mapping[str, Mapping[str, Any]],
                     segmentation: Mapping[str, Mapping[str, Mapping[str, Any]]],
                     kinds: Mapping[tuple[str, str], str | None],
                     flags: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The report's "per_concept" section: one row per (split, concept), by name.

    Args:
        attention_by_split: `evaluate_attention`'s result (entries with "per_concept").
        segmentation: variant -> split -> concept -> {"precision", "recall", "iou",
            "images"} (`SegmentationResult.per_concept`).
        kinds: (split, concept) -> the category's "supercategory" (the world: its type).
        flags: concept -> a note on its word vector (`concepts.diagnostics.concept_flags`).

    Returns:
        split -> [{"concept", "kind", "images", "vector", "iou": {variant: value},
        "precision" / "recall": {"full": value}, "pointing_game" / "soft_iou":
        {attention variant: value (boxes)}}], rows sorted by concept.
    """
    rows: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        full = segmentation.get("full", {}).get(split, {})
        attention = attention_by_split.get(split, {})
        concepts = sorted(set(full) | {c for entry in attention.values()
                                       for c in entry.get("per_concept", {})})
        rows[split] = []
        for concept in concepts:
            row: dict[str, Any] = {
                "concept": concept, "kind": kinds.get((split, concept)),
                "images": full.get(concept, {}).get("images", 0),
                "vector": flags.get(concept),
                "iou": {v: by_split.get(split, {}).get(concept, {}).get("iou")
                        for v, by_split in segmentation.items()},
                "precision": {"full": full.get(concept, {}).get("precision")},
                "recall": {"full": full.get(concept, {}).get("recall")}}
            for metric in ("pointing_game", "soft_iou"):
                row[metric] = {v: entry.get("per_concept", {}).get(concept, {}).get(metric)
                               for v, entry in attention.items()}
            rows[split].append(row)
    return rows


def assemble_report(attention_by_split: Mapping[str, Mapping[str, Any]],
                    segmentation: Mapping[str, Mapping[str, Any]], presence: Mapping[str, Any],
                    calibration: Mapping[str, Any], config: Mapping[str, Any],
                    timing: Mapping[str, float | None], missing: list[str],
                    skipped: Mapping[str, Any], pictures: Sequence[Picture] = (),
                    per_concept: Mapping[str, Any] | None = None,
                    specificity: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report.json document (DESIGN.md §5) with its extra keys.

    Variants or splits absent from the inputs get null metrics with counts 0. The
    attention entries' "per_concept" dicts are left out (the rows of `per_concept`, from
    `per_concept_rows`, hold them). The pictures are listed as {"path", "caption",
    "group"} (`Picture(**entry)` rebuilds one, e.g. to write the report again with
    `report.write_report`).
    """
    by_split = {s: {v: {k: x for k, x in attention_by_split.get(s, {}).get(
        v, null_attention()).items() if k != "per_concept"}
        for v in report_lib.ATTENTION_VARIANTS} for s in SPLITS}
    return {
        "split": config.get("split", "test"),
        "attention": by_split[ATTENTION_SPLIT],
        "segmentation": {v: {s: dict(segmentation.get(v, {}).get(s, null_segmentation()))
                             for s in SPLITS} for v in report_lib.SEGMENTATION_VARIANTS},
        "presence": dict(presence),
        "config": dict(config),
        "timing_s": dict(timing),
        "missing": list(missing),
        "skipped": dict(skipped),
        "calibration": dict(calibration),
        "attention_by_split": by_split,
        "per_concept": dict(per_concept or {}),
        "specificity": dict(specificity or {}),
        "pictures": [dataclasses.asdict(p) for p in pictures],
    }


def summary(report: Mapping[str, Any], out_dir: str) -> str:
    """What `evaluate` wrote and the paper-style headline rows, for the binary."""
    pictures_dir = os.path.join(out_dir, "pictures")
    count = len(files.listdir(pictures_dir)) if files.isdir(pictures_dir) else 0

    def row(label: str, values: list[Any]) -> str:
        cells = ["–" if v is None else f"{v:.3f}" for v in values]
        return f"  {label:<26}" + "".join(f"{c:>12}" for c in cells)

    segmentation = report["segmentation"]
    lines = ["wrote:",
             f"  report.json   {os.path.join(out_dir, report_lib.REPORT_JSON)}",
             f"  report.md     {os.path.join(out_dir, report_lib.REPORT_MD)}",
             f"  pictures      {pictures_dir} ({count} files)",
             "",
             (f"scored: the {report['split']} split "
              f"({SCORED_SPLITS[report['split']]}/<split>.json)"),
             "",
             "IoU by supervision split (paper Tables 2-3):",
             f"  {'':<26}" + "".join(f"{s:>12}" for s in SPLITS)]
    for variant in report_lib.SEGMENTATION_VARIANTS:
        lines.append(row(variant, [segmentation[variant][s]["iou"] for s in SPLITS]))
    attention = report["attention"]
    lines += ["", f"attention maps on {ATTENTION_SPLIT} (paper Table 1):",
              f"  {'':<26}" + "".join(f"{v:>20}" for v in report_lib.ATTENTION_VARIANTS)]
    for metric in report_lib.ATTENTION_METRICS:
        cells = ["–" if attention[v][metric] is None else f"{attention[v][metric]:.3f}"
                 for v in report_lib.ATTENTION_VARIANTS]
        lines.append(f"  {metric:<26}" + "".join(f"{c:>20}" for c in cells))
    specificity = report.get("specificity") or {}
    if specificity.get("pairs"):
        lines += ["", f"specificity ({specificity['pairs']} concept pairs, map higher on its own "
                      "region): " + ", ".join(
                          f"{v} {specificity[v]['own_region']:.3f}"
                          for v in report_lib.ATTENTION_VARIANTS if v in specificity)]
    presence = report["presence"]
    lines.append("")
    lines.append("presence: " + ", ".join(
        f"{m} {'–' if presence[m] is None else format(presence[m], '.3f')}"
        for m in report_lib.PRESENCE_METRICS))
    if report.get("missing"):
        lines.append("missing (reported as null): " + ", ".join(report["missing"]))
    unknown = report.get("skipped", {}).get("unknown_concepts", {})
    if unknown:
        lines.append(f"skipped {sum(unknown.values())} pairs of {len(unknown)} concepts "
                     f"without a word vector: {', '.join(sorted(unknown)[:10])}")
    for reason, n in report.get("skipped", {}).get("records", {}).items():
        lines.append(f"skipped {n} x {reason}")
    return "\n".join(lines)
