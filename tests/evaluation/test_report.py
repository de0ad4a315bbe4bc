"""Tests of the report.json contract, its Markdown rendering and the acceptance targets."""

from __future__ import annotations

import copy
import json
import math
import os
import pathlib
import re

import pytest

from conceptmask_tf.data import layout
from conceptmask_tf.evaluation import report as rp


def _split(iou: float | None, concepts: int = 3, images: int = 7) -> dict:
    return {"precision": 0.9, "recall": 0.8, "iou": iou, "ap": 0.85,
            "concepts": concepts, "images": images}


def make_report() -> dict:
    """A complete report that meets every acceptance target."""
    ious = {
        "full": {"strong": 0.75, "weak_box": 0.60, "weak_image": 0.50, "zero_shot": 0.40},
        "no_neg": {"strong": 0.74, "weak_box": 0.58, "weak_image": 0.46, "zero_shot": 0.38},
        "single_att": {"strong": 0.70, "weak_box": 0.55, "weak_image": 0.45, "zero_shot": 0.30},
        "concept_blind": {"strong": 0.30, "weak_box": 0.35, "weak_image": 0.33, "zero_shot": 0.25},
    }
    return {
        "attention": {
            "original": {"pointing_game": 0.55, "soft_iou": 0.25},
            "original_finetuned": {"pointing_game": 0.62, "soft_iou": 0.28},
            "refined_noneg": {"pointing_game": 0.79, "soft_iou": 0.40},
            "refined": {"pointing_game": 0.82, "soft_iou": 0.43},
        },
        "segmentation": {v: {s: _split(iou) for s, iou in by_split.items()}
                         for v, by_split in ious.items()},
        "presence": {"cgf1": 0.61, "il_mcc": 0.52, "pm_f1": 0.7},
        "config": {"preset": "demo", "image_size": [64, 64]},
        "timing_s": {"embedding": 12.34, "evaluate": 5},
    }


def _met(report: dict) -> dict[str, bool]:
    return {description: met for description, met, _ in rp.targets_check(report)}


def _delete(report: dict, path: str) -> None:
    *parents, leaf = path.split(".")
    node = report
    for key in parents:
        node = node[key]
    del node[leaf]


def _table_row(markdown: str, first_cell: str) -> list[str]:
    """The cells of the first Markdown table row whose first cell is `first_cell`."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row {first_cell!r}")


def test_splits_match_the_data_layout_order():
    assert rp.SPLITS == layout.SPLITS == ("strong", "weak_box", "weak_image", "zero_shot")


def test_complete_report_is_valid_with_nulls_and_extra_keys():
    report = make_report()
    report["segmentation"]["full"]["zero_shot"]["ap"] = None
    report["attention"]["refined"]["soft_iou"] = float("nan")
    report["per_concept"] = {"dog": 0.5}
    report["segmentation"]["full"]["strong"]["threshold"] = 0.5
    rp.validate_report(report)


@pytest.mark.parametrize("path", [
    "attention.refined.soft_iou",
    "segmentation.single_att.zero_shot.iou",
    "segmentation.full.weak_box.images",
    "presence.cgf1",
    "timing_s",
    "config",
])
def test_missing_key_is_named_by_its_path(path):
    report = make_report()
    _delete(report, path)
    with pytest.raises(ValueError, match=rf"(^|\W){re.escape(path)}: missing"):
        rp.validate_report(report)


@pytest.mark.parametrize("path, value, expected", [
    ("segmentation.full.strong.iou", "0.7", "segmentation.full.strong.iou: expected a number"),
    ("presence.il_mcc", True, "presence.il_mcc: expected a number"),
    ("segmentation.no_neg.weak_image.concepts", 2.0,
     "segmentation.no_neg.weak_image.concepts: expected an int"),
    ("segmentation.no_neg.weak_image.images", -1,
     "segmentation.no_neg.weak_image.images: expected an int"),
    ("segmentation.full.strong.images", None, "segmentation.full.strong.images: expected an int"),
    ("attention.original", [0.5, 0.2], "attention.original: expected an object"),
    ("timing_s", {"train": "slow"}, "timing_s.train: expected seconds"),
])
def test_ill_typed_value_is_named_by_its_path(path, value, expected):
    report = make_report()
    *parents, leaf = path.split(".")
    node = report
    for key in parents:
        node = node[key]
    node[leaf] = value
    with pytest.raises(ValueError, match=re.escape(expected)):
        rp.validate_report(report)


def test_write_report_round_trips_and_writes_nan_as_null(tmp_path):
    report = make_report()
    report["attention"]["original"]["soft_iou"] = float("nan")
    report["segmentation"]["concept_blind"]["weak_box"]["ap"] = float("inf")
    out_dir = str(tmp_path / "out")

    json_path, md_path = rp.write_report(report, out_dir)

    assert (json_path, md_path) == (os.path.join(out_dir, "report.json"),
                                    os.path.join(out_dir, "report.md"))
    text = pathlib.Path(json_path).read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    expected = copy.deepcopy(report)
    expected["attention"]["original"]["soft_iou"] = None
    expected["segmentation"]["concept_blind"]["weak_box"]["ap"] = None
    expected["config"]["image_size"] = [64, 64]
    with open(json_path, encoding="utf-8") as f:
        assert json.load(f) == expected
    assert sorted(os.listdir(out_dir)) == ["report.json", "report.md"]  # no temp files left
    assert pathlib.Path(md_path).read_text(encoding="utf-8") == rp.render_markdown(expected)


def test_write_report_writes_nothing_when_invalid(tmp_path):
    report = make_report()
    del report["presence"]["pm_f1"]
    with pytest.raises(ValueError, match=r"presence\.pm_f1: missing"):
        rp.write_report(report, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()

    existing = tmp_path / "existing"
    existing.mkdir()
    report = make_report()
    report["config"]["callback"] = object()  # not representable in JSON
    with pytest.raises(ValueError, match=r"config\.callback"):
        rp.write_report(report, str(existing))
    assert os.listdir(existing) == []


def test_write_report_replaces_an_existing_report(tmp_path):
    rp.write_report(make_report(), str(tmp_path))
    report = make_report()
    report["presence"]["cgf1"] = 0.123
    json_path, _ = rp.write_report(report, str(tmp_path))
    with open(json_path, encoding="utf-8") as f:
        assert json.load(f)["presence"]["cgf1"] == 0.123


def test_markdown_table_1_shows_measured_and_paper_figures():
    report = make_report()
    report["attention"]["original_finetuned"]["soft_iou"] = None
    markdown = rp.render_markdown(report)
    assert _table_row(markdown, "Pointing game") == [
        "Pointing game", "0.550", "0.620", "0.790", "0.820"]
    assert _table_row(markdown, "soft IoU") == ["soft IoU", "0.250", "–", "0.400", "0.430"]
    assert _table_row(markdown, "Pointing game, paper (OIVG-750)")[1:] == [
        "0.578", "0.631", "0.806", "0.810"]
    assert _table_row(markdown, "IoU, paper (OIVG-750)")[1:] == ["0.262", "0.288", "0.416", "0.421"]


def test_markdown_table_2_row_has_counts_metrics_and_iou_gain():
    report = make_report()
    report["segmentation"]["full"]["weak_box"].update(concepts=12, images=40, precision=0.7123)
    report["segmentation"]["concept_blind"]["weak_image"]["iou"] = None
    markdown = rp.render_markdown(report)
    assert _table_row(markdown, "weak_box (Weak-Box-670)") == [
        "weak_box (Weak-Box-670)", "12", "40", "0.712", "0.800", "0.600", "0.850", "0.350",
        "+0.250", "0.609", "0.307"]
    weak_image = _table_row(markdown, "weak_image (Weak-Image-50)")
    assert weak_image[7:9] == ["–", "–"]  # concept-blind IoU and the gain were not measured


def test_markdown_table_3_mean_is_over_measured_splits():
    report = make_report()
    report["segmentation"]["no_neg"]["zero_shot"]["iou"] = None
    markdown = rp.render_markdown(report)
    # full: (0.75 + 0.60 + 0.50 + 0.40) / 4 = 0.5625; no_neg without zero_shot: 1.78 / 3 = 0.5933
    assert _table_row(markdown, "Full") == ["Full", "0.750", "0.600", "0.500", "0.400", "0.562"]
    assert _table_row(markdown, "No-neg (Ours-noNeg)") == [
        "No-neg (Ours-noNeg)", "0.740", "0.580", "0.460", "–", "0.593"]
    assert rp.mean_over_splits(report, "no_neg") == pytest.approx(1.78 / 3)


def test_mean_over_splits_is_none_when_nothing_was_measured():
    report = make_report()
    for split in rp.SPLITS:
        report["segmentation"]["single_att"][split]["iou"] = float("nan") if split == "strong" else None
    assert rp.mean_over_splits(report, "single_att") is None
    assert _table_row(rp.render_markdown(report), "Single-att (Ours-singleAtt)")[-1] == "–"


def test_markdown_zero_shot_presence_pictures_timing_and_config():
    pictures = [rp.Picture("pictures/strong_dog.png", "dog [strong]", "objects"),
                rp.Picture("pictures/sky.png", "sky", "stuff"),
                rp.Picture("pictures/cat.png", "cat", "objects")]
    markdown = rp.render_markdown(make_report(), pictures)
    assert _table_row(markdown, "this run (zero_shot)")[1:] == ["0.400", "0.250", "+0.150"]
    assert _table_row(markdown, "paper §5.4 (10 unseen concepts; Saliency-DSS)")[1:3] == [
        "0.436", "0.298"]
    assert _table_row(markdown, "0.610") == ["0.610", "0.520", "0.700"]
    assert _table_row(markdown, "embedding") == ["embedding", "12.3"]
    # Pictures under their group heading, in order; brackets in captions escaped.
    objects = markdown.index("### objects")
    stuff = markdown.index("### stuff")
    dog = markdown.index(r"![dog \[strong\]](pictures/strong_dog.png)")
    cat = markdown.index("![cat](pictures/cat.png)")
    sky = markdown.index("![sky](pictures/sky.png)")
    assert objects < dog < cat < stuff < sky
    config_block = markdown.split("```json\n")[1].split("\n```")[0]
    assert json.loads(config_block) == {"preset": "demo", "image_size": [64, 64]}


def test_all_targets_met_on_the_example_report():
    targets = rp.targets_check(make_report())
    assert len(targets) == 10
    assert all(met for _, met, _ in targets), targets


@pytest.mark.parametrize("change, flipped", [
    (lambda r: r["segmentation"]["full"]["strong"].update(iou=0.69), "Full IoU >= 0.70 on strong"),
    (lambda r: r["segmentation"]["full"]["weak_box"].update(iou=0.549),
     "Full IoU >= 0.55 on weak_box"),
    (lambda r: r["attention"]["refined"].update(pointing_game=0.79),
     "Refined pointing game >= 0.80"),
    (lambda r: r["attention"]["original"].update(soft_iou=0.43),
     "Refined beats Original on soft IoU"),
    (lambda r: r["segmentation"]["concept_blind"]["zero_shot"].update(iou=0.31),
     "Zero-shot: full IoU - concept_blind IoU >= 0.10"),
    (lambda r: r["segmentation"]["concept_blind"]["weak_image"].update(iou=0.5),
     "Full beats concept_blind IoU on every split"),
    (lambda r: r["segmentation"]["single_att"]["strong"].update(iou=0.99),  # mean 0.5725 > 0.5625
     "Full >= single_att on mean IoU over splits"),
])
def test_each_target_flips_alone(change, flipped):
    report = make_report()
    change(report)
    met = _met(report)
    assert flipped in met
    assert {d for d, m in met.items() if not m} == {flipped}


def test_targets_use_a_tolerance_at_the_threshold():
    report = make_report()
    # 0.5 - 0.4 is 0.0999...98 in floating point; it reaches the 0.10 target.
    report["segmentation"]["full"]["zero_shot"]["iou"] = 0.5
    report["segmentation"]["concept_blind"]["zero_shot"]["iou"] = 0.4
    report["segmentation"]["full"]["weak_image"]["iou"] = 0.45
    report["segmentation"]["no_neg"] = copy.deepcopy(report["segmentation"]["full"])  # equal mean
    met = _met(report)
    assert met["Zero-shot: full IoU - concept_blind IoU >= 0.10"]
    assert met["Full IoU >= 0.45 on weak_image"]
    assert met["Full >= no_neg on mean IoU over splits"]


def test_unmeasured_value_fails_its_targets_and_says_so():
    report = make_report()
    report["segmentation"]["full"]["zero_shot"]["iou"] = None
    results = {d: (m, text) for d, m, text in rp.targets_check(report)}
    failed = {d for d, (m, _) in results.items() if not m}
    assert failed == {"Zero-shot: full IoU - concept_blind IoU >= 0.10",
                      "Full beats concept_blind IoU on every split"}
    for description in failed:
        assert "not measured" in results[description][1]
    assert "full IoU zero_shot" in results["Zero-shot: full IoU - concept_blind IoU >= 0.10"][1]
    # The full mean now is over three splits: (0.75 + 0.60 + 0.50) / 3 >= no_neg's 0.54.
    assert results["Full >= no_neg on mean IoU over splits"][0]


def test_nan_counts_as_not_measured_in_targets_and_markdown():
    report = make_report()
    report["attention"]["refined"]["pointing_game"] = math.nan
    met = _met(report)
    assert not met["Refined pointing game >= 0.80"]
    assert not met["Refined beats Original on pointing game"]
    markdown = rp.render_markdown(report)
    assert _table_row(markdown, "Pointing game")[-1] == "–"
    assert _table_row(markdown, "Refined pointing game >= 0.80")[1] == "❌ NOT met"
    assert _table_row(markdown, "Full IoU >= 0.70 on strong")[1:] == [
        "✅ met", "full IoU strong 0.750 (target >= 0.70)"]
