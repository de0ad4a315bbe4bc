"""The report assembled by `evaluate`, model loading, bad input and the binary end to end."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from conceptmask_tf import evaluation
from conceptmask_tf.assembly.segmenter import ConceptMaskSegmenter
from conceptmask_tf.assembly.stage_networks import load_stage_networks
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.data.layout import SPLITS
from conceptmask_tf.errors import DataError
from conceptmask_tf.evaluation import report as report_lib
from conceptmask_tf.evaluation.evaluator import assemble_report, evaluate, summary
from conceptmask_tf.evaluation.segmentation_evaluation import null_presence, null_segmentation
from conceptmask_tf.models import ConceptMask
from tests.evaluation import eval_fixtures as fx
from tests.evaluation.test_report import make_report
from tests.models import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_models(models: str, no_neg: bool = True) -> str:
    """Tiny untrained stage networks in the work-dir layout, with their config.json."""
    configs = {
        "embedding": (tiny.embedding_model(), {"image_size": 32}, {}),
        "refinement": (tiny.refinement_model(), {"image_size": 32},
                       {"target_concepts": ["dog", "sky"]}),
        "segmentation": (tiny.segmentation_model(2),
                         {"image_size": 32, "attention_scales": [1.0, 2.0]}, {}),
        "saliency": (tiny.segmentation_model(0), {"image_size": 32}, {}),
    }
    if no_neg:
        configs["refinement_no_neg"] = (tiny.refinement_model(coarse_skip=False),
                                        {"image_size": 32, "no_neg": True}, {})
    for name, (model, config, runtime) in configs.items():
        stage = name.split("_")[0]
        os.makedirs(os.path.join(models, name))
        model.save(os.path.join(models, name, f"{stage}.keras"))
        with open(os.path.join(models, name, "config.json"), "w") as f:
            json.dump({"stage": stage, "config": config, "runtime": runtime}, f)
    return models


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    """<work>/models (no segmentation_single_att), <work>/concepts, <work>/world (no
    zero_shot ground truth)."""
    work = tmp_path_factory.mktemp("work")
    _write_models(str(work / "models"))
    fx.write_concepts(str(work / "concepts"))
    fx.write_data_root(str(work / "world"), splits=SPLITS[:3], val=True)
    fx.write_data_root(str(work / "world_test_only"), splits=SPLITS[:3])
    return work


def _measured_segmentation() -> dict:
    return {s: {"precision": 0.5, "recall": 0.5, "iou": 0.25, "ap": 0.4, "concepts": 2,
                "images": 3} for s in SPLITS}


def test_assembled_report_fills_what_is_missing_with_nulls_and_validates():
    attention = {"weak_box": {"refined": {
        "pointing_game": 0.5, "soft_iou": 0.2, "pointing_game_mask": 0.4, "soft_iou_mask": 0.3,
        "soft_iou_mask_minmax": 0.35, "concepts": 2, "images": 3}}}
    report = assemble_report(attention, {"full": _measured_segmentation()}, null_presence(),
                             {"skipped": "no val files"}, {"image_size": 32},
                             {"total": 1.0, "segmentation_single_att": None},
                             missing=["segmentation_single_att"], skipped={})
    report_lib.validate_report(report)
    assert report["split"] == "test"
    assert report["attention"]["refined"]["pointing_game"] == 0.5
    assert report["attention"]["original"] == {
        **dict.fromkeys(report_lib.ATTENTION_METRICS), "concepts": 0, "images": 0}
    for variant in ("no_neg", "single_att", "saliency", "oracle_attention"):
        assert report["segmentation"][variant] == {s: null_segmentation() for s in SPLITS}
    assert report["missing"] == ["segmentation_single_att"]
    text = summary(report, "/nowhere")
    assert "0.250" in text and "missing (reported as null): segmentation_single_att" in text


def test_missing_concepts_or_required_model_name_the_path_and_producer(tmp_path, work_dir):
    with pytest.raises(FileNotFoundError, match="conceptmask-concepts"):
        evaluate(str(work_dir / "models"), str(work_dir / "world"), str(tmp_path / "out"),
                 concepts_dir=str(tmp_path / "nothing"))
    models = tmp_path / "models"
    os.makedirs(models)
    with pytest.raises(FileNotFoundError, match="embedding.keras.*conceptmask-train-embedding"):
        load_stage_networks(str(models))


def test_calibration_is_skipped_without_validation_files(tmp_path):
    model = ConceptMask(tiny.refinement_model(), tiny.segmentation_model(2), 32, (1.0, 2.0),
                        presence_threshold=0.25)
    root = fx.write_data_root(str(tmp_path / "root"))  # eval/ only
    concepts = fx.write_concepts(str(tmp_path / "concepts"))
    segmenter = ConceptMaskSegmenter(model, ConceptEmbeddings.load(concepts))
    assert "val/strong.json" in segmenter.calibrate(root, concepts, max_images=5)["skipped"]
    assert segmenter.calibrate(root, concepts, max_images=0) == {
        "skipped": "calibration_images = 0"}
    assert segmenter.calibration == {"skipped": "calibration_images = 0"}
    assert float(model.presence_score.threshold.numpy()) == 0.25  # left as it was


def test_every_exported_name_resolves():
    assert sorted(evaluation.__all__) == sorted(evaluation._MODULE_OF)
    for name in evaluation.__all__:
        module = evaluation._MODULE_OF[name]
        assert getattr(evaluation, name) is getattr(
            importlib.import_module(f"conceptmask_tf.evaluation.{module}"), name)


def test_load_stage_networks_reads_scales_image_size_and_lists_missing_dirs(work_dir):
    variants = load_stage_networks(str(work_dir / "models"))
    assert variants.missing == ["segmentation_single_att"]
    assert variants.has("saliency") and variants.saliency_image_size == 32
    assert variants.has("refinement_no_neg") and not variants.has("segmentation_single_att")
    assert variants.model_dirs["segmentation_single_att"] is None
    assert (variants.image_size, variants.scales) == (32, (1.0, 2.0))
    assert variants.attention_sides(variants.scales) == [4, 8]  # small_convnet stride 8


@pytest.mark.slow
def test_binary_writes_a_valid_report_with_nulls_for_the_missing_variant(work_dir, tmp_path):
    out = tmp_path / "report"
    command = [sys.executable, "-m", "conceptmask_tf.bin.evaluate",
               f"--model_dir={work_dir / 'models'}", f"--data_root={work_dir / 'world'}",
               f"--out_dir={out}", "--calibration_images=2", "--batch_size=2",
               "--pictures_per_group=1", "--noprogress"]
    done = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "IoU by supervision split" in done.stdout and str(out) in done.stdout

    with open(out / "report.json") as f:
        report = json.load(f)
    report_lib.validate_report(report)
    assert report["split"] == "test" and report["config"]["ground_truth"] == "eval/<split>.json"
    assert report["missing"] == ["segmentation_single_att", "eval/zero_shot.json"]
    assert report["segmentation"]["single_att"] == {s: null_segmentation() for s in SPLITS}
    full = report["segmentation"]["full"]
    assert {s: (full[s]["concepts"], full[s]["images"]) for s in SPLITS} == {
        "strong": (1, 2), "weak_box": (2, 3), "weak_image": (1, 1), "zero_shot": (0, 0)}
    for variant in ("full", "no_neg", "saliency", "oracle_attention"):
        for split in SPLITS[:3]:
            assert 0.0 <= report["segmentation"][variant][split]["iou"] <= 1.0
            assert report["segmentation"][variant][split]["concepts"] == full[split]["concepts"]
        assert report["segmentation"][variant]["zero_shot"] == null_segmentation()
    for variant in report_lib.ATTENTION_VARIANTS:
        for metric in report_lib.ATTENTION_METRICS:
            assert 0.0 <= report["attention"][variant][metric] <= 1.0
    rows = {r["concept"]: r for r in report["per_concept"]["weak_box"]}
    assert set(rows) == {"sky", "cat"} and rows["sky"]["images"] == 2
    assert rows["sky"]["kind"] == "stuff" and rows["sky"]["vector"] is None
    assert set(rows["cat"]["iou"]) == {"full", "no_neg", "saliency", "oracle_attention"}
    assert "## Per concept" in (out / "report.md").read_text()
    # Ordered pairs of disjoint present concepts: img0 sky/dog, img1 dog/cat/red car.
    assert report["specificity"]["pairs"] == 8
    assert 0.0 <= report["specificity"]["refined"]["own_region"] <= 1.0
    assert "specificity (8 concept pairs" in done.stdout
    # Present pairs: dog x2, sky x2, cat, red car; absent: car, sky, cat, red car.
    assert report["presence"]["positives"] == 6 and report["presence"]["negatives"] == 4
    assert report["skipped"]["unknown_concepts"] == {"zebra": 1}
    assert report["calibration"]["presence"]["positives"] > 0
    assert report["config"]["concepts_dir"] == os.path.normpath(work_dir / "concepts")
    assert report["config"]["supervised_source"] == "refinement target_concepts"
    assert {"load", "calibration", "attention", "segmentation_full", "pictures",
            "total"} <= set(report["timing_s"])
    assert report["timing_s"]["segmentation_single_att"] is None

    markdown = (out / "report.md").read_text()
    pictures = sorted(os.listdir(out / "pictures"))
    assert pictures and all(f"(pictures/{name})" in markdown for name in pictures)
    listed = [report_lib.Picture(**entry) for entry in report["pictures"]]
    assert sorted(os.path.basename(p.path) for p in listed) == pictures
    assert report_lib.render_markdown(report, listed) == markdown


@pytest.mark.slow
def test_the_split_chooses_the_ground_truth_folder_and_nothing_else_is_read(work_dir, tmp_path):
    # A data root with val/ only: the test split cannot be scored (no silent fallback),
    # the val split can; and a root with eval/ only cannot score val.
    val_only = tmp_path / "val_only"
    fx.write_data_root(str(val_only), splits=SPLITS[:3], val=True)
    for name in os.listdir(val_only / "eval"):
        os.remove(val_only / "eval" / name)
    models = str(work_dir / "models")
    kwargs = {"calibration_images": 0, "batch_size": 2, "pictures_per_group": 0,
              "progress": False}
    with pytest.raises(DataError, match="eval/strong.json"):
        evaluate(models, str(val_only), str(tmp_path / "a"), split="test", **kwargs)
    report = evaluate(models, str(val_only), str(tmp_path / "b"), split="val", **kwargs)
    assert report["split"] == "val" and report["config"]["ground_truth"] == "val/<split>.json"
    assert report["segmentation"]["full"]["weak_box"]["concepts"] == 2
    assert "Scored on the **validation** split" in (tmp_path / "b" / "report.md").read_text()
    with pytest.raises(DataError, match="val/strong.json"):
        evaluate(models, str(work_dir / "world_test_only"), str(tmp_path / "c"), split="val",
                 **kwargs)
    with pytest.raises(ValueError, match="split must be one of"):
        evaluate(models, str(val_only), str(tmp_path / "d"), split="eval", **kwargs)


@pytest.mark.slow
def test_single_att_runs_one_attention_pass_at_the_first_scale(tmp_path):
    # Ours-singleAtt: the segmentation network trained with --single_att sees only the
    # refined attention of the first scale (the image at S); its masks are exactly that.
    import numpy as np
    import tensorflow as tf

    models = _write_models(str(tmp_path / "models"))
    single = tiny.segmentation_model(1)
    os.makedirs(os.path.join(models, "segmentation_single_att"))
    single.save(os.path.join(models, "segmentation_single_att", "segmentation.keras"))
    with open(os.path.join(models, "segmentation_single_att", "config.json"), "w") as f:
        json.dump({"stage": "segmentation", "config": {
            "image_size": 32, "attention_scales": [1.0, 2.0], "single_att": True}}, f)
    variants = load_stage_networks(models)
    assert variants.single_att_scales == (1.0,)
    model = variants.concept_mask("refinement", "segmentation_single_att")
    image = tiny.images(1, 24, seed=2, width=40)  # resized to 32 x 32 inside
    vectors = tiny.word_vectors()[None, :3]
    got = np.asarray(model({"image": image, "word_vectors": vectors})["mask_probs"])

    refinement = variants.networks["refinement"]
    resized = tf.image.resize(image, (32, 32), antialias=False)
    embedded = refinement.embedding(resized, training=False)
    logits, _ = refinement.refine(embedded["embedding_map"], tf.constant(vectors))
    attention = tf.transpose(tf.sigmoid(logits), (0, 3, 1, 2))  # [1, 3, 4, 4]
    masks = variants.networks["segmentation_single_att"](
        {"image": resized, "attention_0": attention})["logits"]  # [1, 3, 32, 32]
    expected = tf.sigmoid(tf.transpose(tf.image.resize(
        tf.transpose(masks, (0, 2, 3, 1)), (24, 40), antialias=False), (0, 3, 1, 2)))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_segmentation_config_chooses_the_weak_concepts_attention(tmp_path):
    models = _write_models(str(tmp_path / "models"), no_neg=False)
    supervised = tiny.word_vectors()[:2]
    default = load_stage_networks(models)
    assert default.weak_attention == "refined"
    assert default.concept_mask(supervised_vectors=supervised).weak_attention == "refined"
    tiny.update_model_config(os.path.join(models, "segmentation"), weak_attention="original")
    model = load_stage_networks(models).concept_mask(supervised_vectors=supervised)
    assert model.weak_attention == "original"
    model.get_layer("stage1_fcn")  # the stage-1 maps are part of the composed model


def test_per_concept_rows_join_variants_kinds_and_vector_flags():
    from conceptmask_tf.evaluation.evaluator import per_concept_rows

    attention = {"weak_box": {
        "refined": {"pointing_game": 0.75, "per_concept": {
            "sky": {"pointing_game": 0.5, "soft_iou": 0.2}, "cat": {"pointing_game": 1.0,
                                                                    "soft_iou": 0.4}}},
        "original": {"pointing_game": None}}}  # a null entry has no per-concept dict
    segmentation = {
        "full": {"weak_box": {"sky": {"precision": 0.5, "recall": 0.6, "iou": 0.4,
                                      "images": 2},
                              "cat": {"precision": 1.0, "recall": 1.0, "iou": 0.9,
                                      "images": 1}}},
        "saliency": {"weak_box": {"sky": {"iou": 0.1, "images": 2}}}}
    rows = per_concept_rows(attention, segmentation, {("weak_box", "sky"): "stuff"},
                            {"sky": "≈ outdoor"})
    assert [r["concept"] for r in rows["weak_box"]] == ["cat", "sky"]
    sky = rows["weak_box"][1]
    assert sky == {"concept": "sky", "kind": "stuff", "images": 2, "vector": "≈ outdoor",
                   "iou": {"full": 0.4, "saliency": 0.1}, "precision": {"full": 0.5},
                   "recall": {"full": 0.6}, "pointing_game": {"refined": 0.5, "original": None},
                   "soft_iou": {"refined": 0.2, "original": None}}
    assert rows["weak_box"][0]["iou"]["saliency"] is None and rows["strong"] == []
    assembled = assemble_report(attention, {}, null_presence(), {}, {}, {}, [], {},
                                per_concept=rows)
    assert "per_concept" not in assembled["attention_by_split"]["weak_box"]["refined"]
    assert assembled["per_concept"] == rows
    report = make_report()
    report["per_concept"] = rows
    markdown = report_lib.render_markdown(report)
    assert "| stuff | – | 0.400 (1) | – | – |" in markdown  # kind means: weak_box column
    assert "| weak_box | sky | stuff | 2 | 0.400 | 0.100 | – | 0.500 | – | ≈ outdoor |" in markdown
