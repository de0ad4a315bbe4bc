"""load_concept_mask: the full model of a work dir, its supervised concepts and calibration."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from conceptmask_tf.errors import DataError
from conceptmask_tf.evaluation.variants import ModelVariants
from conceptmask_tf.serving import inference_model
from conceptmask_tf.serving.inference_model import load_concept_mask, read_calibration
from tests.serving.conftest import CALIBRATION, SUPERVISED, random_image, write_report

INITIAL = {"threshold": 0.0, "scale": 10.0, "theta": 0.5}  # ConceptMask's defaults


def _linked_work_dir(tmp_path, tiny_work_dir):
    """A work dir sharing the tiny models and concepts but with no report."""
    for name in ("models", "concepts"):
        os.symlink(tiny_work_dir / name, tmp_path / name)
    return tmp_path


def _outputs(model, embeddings, concepts):
    image = random_image(24, 20, seed=5)[None].astype(np.float32)
    vectors = embeddings.vectors_for(concepts)[None]
    return {k: np.asarray(v)[0] for k, v in model({"image": image, "word_vectors": vectors},
                                                   training=False).items()}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_report_calibration_is_applied_and_changes_presence_and_weak_maps(
        tiny_model, tiny_work_dir, tmp_path, caplog):
    model, embeddings, info = tiny_model
    assert info["calibration"] == pytest.approx({"applied": True, "source": str(
        tiny_work_dir / "report" / "report.json"), **CALIBRATION})
    assert info["supervised_concepts"] == SUPERVISED
    assert info["supervised_source"] == "refinement target_concepts"
    assert model.num_supervised == 3 and info["image_size"] == 32

    work = _linked_work_dir(tmp_path, tiny_work_dir)
    with caplog.at_level(logging.WARNING, logger="conceptmask_tf"):
        default, _, default_info = load_concept_mask(str(work / "models"))
    assert default_info["calibration"]["applied"] is False
    assert "report.json does not exist" in default_info["calibration"]["reason"]
    assert {k: default_info["calibration"][k] for k in INITIAL} == INITIAL
    assert "no calibration applied" in caplog.text

    concepts = ["dog", "cloud", "red car"]  # dog is supervised, the others are not
    calibrated = _outputs(model, embeddings, concepts)
    initial = _outputs(default, embeddings, concepts)
    # Same networks: the similarity is the same, presence follows each calibration.
    np.testing.assert_allclose(calibrated["similarity"], initial["similarity"], atol=1e-6)
    similarity = calibrated["similarity"]
    np.testing.assert_allclose(calibrated["presence"], _sigmoid(4.0 * (similarity - 0.3)),
                               atol=1e-6)
    np.testing.assert_allclose(initial["presence"], _sigmoid(10.0 * similarity), atol=1e-6)
    # theta moves the maps of unsupervised concepts only.
    np.testing.assert_allclose(calibrated["attention"][0], initial["attention"][0], atol=1e-6)
    assert np.abs(calibrated["attention"][1:] - initial["attention"][1:]).max() > 1e-4


def test_skipped_calibration_keeps_defaults_and_says_why(tmp_path, tiny_work_dir, caplog):
    work = _linked_work_dir(tmp_path, tiny_work_dir)
    write_report(str(work / "report" / "report.json"), {"skipped": "no val files"})
    with caplog.at_level(logging.WARNING, logger="conceptmask_tf"):
        model, _, info = load_concept_mask(str(work / "models"))
    assert info["calibration"]["applied"] is False
    assert info["calibration"]["reason"] == "the calibration was skipped: no val files"
    assert model.weak_theta == 0.5 and "no calibration applied" in caplog.text


def test_calibration_entry_is_validated(tmp_path):
    report = write_report(str(tmp_path / "report.json"), {**CALIBRATION, "theta": 1.5})
    with pytest.raises(DataError, match=r"report.json \[calibration\]: calibration theta must"):
        read_calibration(report, str(tmp_path))
    write_report(report, {"threshold": 0.1, "scale": 2.0})
    with pytest.raises(DataError, match="calibration theta must be a finite number"):
        read_calibration(report, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nowhere.json does not exist.*conceptmask-"
                                                "evaluate"):
        read_calibration(str(tmp_path / "nowhere.json"), str(tmp_path))
    assert read_calibration(dict(CALIBRATION), str(tmp_path)) == (CALIBRATION, "argument", "")
    write_report(report, None)
    values, _, reason = read_calibration(report, str(tmp_path))
    assert values is None and reason.endswith("has no calibration entry")


def _variants(tmp_path, runtime):
    refinement = tmp_path / "refinement"
    refinement.mkdir(parents=True)
    (refinement / "config.json").write_text(json.dumps({"stage": "refinement",
                                                        "runtime": runtime}))
    return ModelVariants(str(tmp_path), {}, {"refinement": str(refinement)}, [], 32,
                         (1.0, 2.0), ())


def test_supervised_concepts_need_no_data_root_but_use_it_when_given(tmp_path, tiny_model):
    _, embeddings, _ = tiny_model
    variants = _variants(tmp_path, {"target_concepts": ["sky", "zebra"]})
    assert inference_model._supervised(variants, None, embeddings) == (
        ["sky"], "refinement target_concepts")
    bare = _variants(tmp_path / "bare", {})
    assert inference_model._supervised(bare, None, embeddings) == ([], "none")
    root = tmp_path / "root"
    root.mkdir()
    (root / "splits.json").write_text(json.dumps({"strong": ["dog"], "weak_box": ["cat"],
                                                  "weak_image": ["cloud"], "zero_shot": []}))
    assert inference_model._supervised(bare, str(root), embeddings) == (
        ["dog", "cat"], "splits.json")


def test_missing_inputs_name_the_path_and_the_producer(tmp_path, tiny_work_dir):
    with pytest.raises(FileNotFoundError, match="nothing/concepts.tsv does not exist.*"
                                                "conceptmask-concepts"):
        load_concept_mask(str(tiny_work_dir / "models"), concepts_dir=str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="models is not a directory.*"
                                                "conceptmask-pipeline"):
        load_concept_mask(str(tmp_path / "models"), str(tiny_work_dir / "concepts"))
    (tmp_path / "models").mkdir()
    with pytest.raises(FileNotFoundError, match="embedding.keras.*conceptmask-train-embedding"):
        load_concept_mask(str(tmp_path / "models"), str(tiny_work_dir / "concepts"))
