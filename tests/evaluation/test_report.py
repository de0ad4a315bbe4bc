"""Tests of the report.json contract and its Markdown rendering (the world's acceptance
targets are tested in tests/test_world_targets.py)."""

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
    """A complete report (it meets every acceptance target of benchmarks/world_targets.py)."""
    ious = {
        "full": {"strong": 0.75, "weak_box": 0.60, "weak_image": 0.50, "zero_shot": 0.40},
        "no_neg": {"strong": 0.74, "weak_box": 0.58, "weak_image": 0.46, "zero_shot": 0.38},
        "single_att": {"strong": 0.70, "weak_box": 0.55, "weak_image": 0.45, "zero_shot": 0.30},
        "saliency": {"strong": 0.30, "weak_box": 0.35, "weak_image": 0.33, "zero_shot": 0.25},
        "oracle_attention": {"strong": 0.85, "weak_box": 0.8, "weak_image": 0.7,
                             "zero_shot": 0.7},
    }

    def attention(pointing_game, soft_iou):
        return {"pointing_game": pointing_game, "soft_iou": soft_iou,
                "pointing_game_mask": pointing_game - 0.05, "soft_iou_mask": soft_iou - 0.05,
                "soft_iou_mask_minmax": soft_iou + 0.1}

    return {
        "split": "test",
        "attention": {
            "original": attention(0.55, 0.25),
            "original_finetuned": attention(0.62, 0.28),
            "refined_noneg": attention(0.79, 0.40),
            "refined": attention(0.82, 0.43),
        },
        "segmentation": {v: {s: _split(iou) for s, iou in by_split.items()}
                         for v, by_split in ious.items()},
        "presence": {"cgf1": 0.61, "il_mcc": 0.52, "pm_f1": 0.7},
        "config": {"preset": "demo", "image_size": [64, 64]},
        "timing_s": {"embedding": 12.34, "evaluate": 5},
    }


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
    "split",
    "attention.original.pointing_game_mask",
    "segmentation.saliency.zero_shot.iou",
    "segmentation.oracle_attention.strong.iou",
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
    ("split", "eval", "split: expected one of ('test', 'val')"),
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
    report["segmentation"]["saliency"]["weak_box"]["ap"] = float("inf")
    out_dir = str(tmp_path / "out")

    json_path, md_path = rp.write_report(report, out_dir)

    assert (json_path, md_path) == (os.path.join(out_dir, "report.json"),
                                    os.path.join(out_dir, "report.md"))
    text = pathlib.Path(json_path).read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    expected = copy.deepcopy(report)
    expected["attention"]["original"]["soft_iou"] = None
    expected["segmentation"]["saliency"]["weak_box"]["ap"] = None
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


def test_a_report_of_the_retired_concept_blind_row_gets_a_clear_error():
    report = make_report()
    report["segmentation"]["concept_blind"] = report["segmentation"].pop("saliency")
    with pytest.raises(ValueError, match="concept_blind: a report written before 2026-12"):
        rp.validate_report(report)


def test_markdown_says_which_split_was_scored():
    report = make_report()
    assert "Scored on the **test** split (`eval/<split>.json`)" in rp.render_markdown(report)
    report["split"] = "val"
    markdown = rp.render_markdown(report)
    assert "Scored on the **validation** split (`val/<split>.json`)" in markdown
    assert "not for reporting" in markdown


def test_markdown_table_1_shows_the_box_protocol_next_to_the_paper_then_mask_columns():
    report = make_report()
    report["attention"]["original_finetuned"]["soft_iou"] = None
    markdown = rp.render_markdown(report)
    assert _table_row(markdown, "Pointing game (boxes)") == [
        "Pointing game (boxes)", "0.550", "0.620", "0.790", "0.820"]
    assert _table_row(markdown, "soft IoU (boxes, eq. 5)") == [
        "soft IoU (boxes, eq. 5)", "0.250", "–", "0.400", "0.430"]
    assert _table_row(markdown, "Pointing game (boxes), paper (OIVG-750)")[1:] == [
        "0.578", "0.631", "0.806", "0.810"]
    assert _table_row(markdown, "soft IoU (boxes, eq. 5), paper (OIVG-750)")[1:] == [
        "0.262", "0.288", "0.416", "0.421"]
    assert _table_row(markdown, "Pointing game (masks)")[-1] == "0.770"
    assert _table_row(markdown, "soft IoU (masks, min-max maps)")[-1] == "0.530"
    assert "paper (OIVG-750)" not in "".join(  # the paper has no mask-based columns
        line for line in markdown.splitlines() if "(masks" in line)


def test_markdown_table_2_rows_are_ours_saliency_and_oracle_next_to_the_paper():
    report = make_report()
    report["segmentation"]["full"]["weak_box"].update(concepts=12, images=40, precision=0.7123)
    report["segmentation"]["saliency"]["weak_image"]["iou"] = None
    markdown = rp.render_markdown(report)
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith("| weak_box (Weak-Box-670)")]
    assert rows[0] == ["weak_box (Weak-Box-670)", "Ours (full model)", "12", "40", "0.712",
                       "0.800", "0.600", "0.850", "Ours", "0.741", "0.800", "0.609"]
    assert rows[1][1:] == ["Saliency (concept-blind baseline)", "3", "7", "0.900", "0.800",
                           "0.350", "0.850", "Saliency-DSS", "0.592", "0.407", "0.307"]
    assert rows[2][1] == "Oracle attention (ceiling)" and rows[2][6] == "0.800"
    assert rows[2][8:] == ["–"] * 4  # the paper has no such row
    weak_image = next(line for line in markdown.splitlines()
                      if line.startswith("| weak_image") and "Saliency (" in line)
    assert "| – |" in weak_image  # the saliency IoU was not measured
    assert "Targets" not in markdown  # the world's acceptance checks are not a user's


def test_markdown_table_3_mean_is_over_measured_splits():
    report = make_report()
    report["segmentation"]["no_neg"]["zero_shot"]["iou"] = None
    markdown = rp.render_markdown(report)
    # full: (0.75 + 0.60 + 0.50 + 0.40) / 4 = 0.5625; no_neg without zero_shot: 1.78 / 3 = 0.5933
    assert _table_row(markdown, "Ours (full model)")[1:9] == [
        "0.750", "0.600", "0.500", "0.400", "0.562", "0.402", "0.609", "0.412"]
    assert _table_row(markdown, "Ours-noNeg") == [
        "Ours-noNeg", "0.740", "0.580", "0.460", "–", "0.593", "0.395", "0.594", "0.356"]
    assert rp.mean_over_splits(report, "no_neg") == pytest.approx(1.78 / 3)


def test_mean_over_splits_is_none_when_nothing_was_measured():
    report = make_report()
    for split in rp.SPLITS:
        report["segmentation"]["single_att"][split]["iou"] = float("nan") if split == "strong" else None
    assert rp.mean_over_splits(report, "single_att") is None
    assert _table_row(rp.render_markdown(report), "Ours-singleAtt")[5] == "–"


def test_markdown_zero_shot_presence_pictures_timing_and_config():
    pictures = [rp.Picture("pictures/strong_dog.png", "dog [strong]", "objects"),
                rp.Picture("pictures/sky.png", "sky", "stuff"),
                rp.Picture("pictures/cat.png", "cat", "objects")]
    markdown = rp.render_markdown(make_report(), pictures)
    assert _table_row(markdown, "this run (zero_shot)")[1:] == ["0.400", "0.250", "+0.150",
                                                                "0.700"]
    assert _table_row(markdown, "paper §5.4 (10 unseen concepts; Saliency-DSS)")[1:4] == [
        "0.436", "0.298", "+0.138"]
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


def test_nan_shows_as_not_measured_in_markdown():
    report = make_report()
    report["attention"]["refined"]["pointing_game"] = math.nan
    assert _table_row(rp.render_markdown(report), "Pointing game (boxes)")[-1] == "–"
