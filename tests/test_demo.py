"""conceptmask-demo: the README's main job writes what it says and resumes finished steps."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conceptmask_tf import demo
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.data.world import WorldConfig

TINY = WorldConfig(seed=5, num_images=60, image_size=64, num_eval_images=12,
                   min_eval_positives=2)
# The world presets at toy sizes: one epoch each on 60 images of 64 px.
_TINY = {"epochs": 1, "image_size": 64, "summary_images": 0}
_TINY_MASKS = {"encoder_widths": (8, 8, 8, 8), "decoder_widths": (8, 8, 8), "batch_size": 4}
TINY_STAGES = {
    "embedding": {**_TINY, "batch_size": 8, "hidden_dims": (16, 16)},
    "refinement": {**_TINY, "batch_size": 4, "hidden_dim": 8, "matching_top_n": 4},
    "segmentation": {**_TINY, **_TINY_MASKS},
    "saliency": {**_TINY, **_TINY_MASKS},
}
TINY_PIPELINE = {"stage_overrides": TINY_STAGES, "max_eval_images": 4,
                 "calibration_images": 4}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("demo"))
    return demo.run_demo(work, TINY, dim=8, progress=False, pipeline_options=TINY_PIPELINE,
                         announce=lambda _: None)


@pytest.mark.slow
def test_demo_trains_every_stage_and_writes_a_valid_report(first_run):
    from conceptmask_tf.evaluation.report import validate_report

    config = first_run.pipeline.config
    assert first_run.pipeline.steps == {
        "concepts": "done", "embedding": "trained", "refinement": "trained",
        "refinement_no_neg": "trained", "segmentation": "trained",
        "segmentation_single_att": "trained", "saliency": "trained", "assemble": "done",
        "evaluate": "done", "export": "done"}
    with open(os.path.join(config.report_dir, "report.json")) as f:
        report = json.load(f)
    validate_report(report)
    assert report["split"] == "test"
    # Every variant was measured on the strong split (no null from a missing model dir).
    for variant in ("full", "no_neg", "single_att", "saliency", "oracle_attention"):
        assert report["segmentation"][variant]["strong"]["images"] > 0
    assert {"train_embedding", "train_segmentation_single_att"} <= set(report["timing_s"])
    assert os.path.getsize(os.path.join(config.report_dir, "report.md")) > 1000
    assert os.path.join(config.report_dir, "report.md") in first_run.text


@pytest.mark.slow
def test_demo_exports_a_servable_calibrated_model(first_run):
    import tensorflow as tf

    from conceptmask_tf.pipeline import export_paths

    config = first_run.pipeline.config
    paths = export_paths(config)
    for key in ("tflite", "tflite_dynamic_range", "onnx"):
        assert os.path.getsize(paths[key]) > 1000 and paths[key] in first_run.text
    with open(os.path.join(config.report_dir, "report.json")) as f:
        calibration = json.load(f)["calibration"]
    served = tf.saved_model.load(paths["saved_model"]).signatures["segment_concepts"]
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    out = served(image=tf.constant(image), concepts=tf.constant(["sky", "dog"]))
    assert out["masks"].shape == (2, 40, 56) and out["presence"].shape == (2,)
    with open(os.path.join(paths["saved_model"], "assets.extra", "conceptmask.json")) as f:
        exported = json.load(f)["calibration"]
    assert "threshold" in calibration  # the assembly calibrated on val: the export carries it
    assert exported["threshold"] == pytest.approx(calibration["threshold"], abs=1e-6)
    assert exported["theta"] == pytest.approx(calibration["theta"])


@pytest.mark.slow
def test_assembly_leaves_evaluation_and_export_as_the_previous_composition(first_run,
                                                                           tmp_path):
    """The saved ConceptMask gives the figures and served outputs of the previous route:
    the full model composed from the stage networks and calibrated inside evaluation."""
    import tensorflow as tf

    from conceptmask_tf.evaluation.evaluator import evaluate
    from conceptmask_tf.models import ConceptMask
    from conceptmask_tf.models.stage_files import load_stage_model
    from conceptmask_tf.pipeline import export_paths

    config = first_run.pipeline.config
    with open(os.path.join(config.report_dir, "report.json")) as f:
        saved_route = json.load(f)
    composed_route = evaluate(config.models_dir, config.data_root, str(tmp_path / "report"),
                              max_images=4, calibration_images=4, pictures_per_group=0,
                              progress=False, segmenter_dir=str(tmp_path / "none"))
    assert composed_route["config"]["segmenter_dir"] is None  # assembled inside evaluation
    composed = json.loads(json.dumps(composed_route["calibration"]))
    for key in ("threshold", "scale", "theta", "theta_iou"):
        assert composed[key] == pytest.approx(saved_route["calibration"][key]), key
    for split, figures in saved_route["calibration"]["split_iou"].items():
        assert composed["split_iou"][split] == pytest.approx(figures), split
    assert composed_route["presence"] == pytest.approx(saved_route["presence"], abs=1e-6)
    for section in ("segmentation", "attention"):
        for name, by_split in saved_route[section].items():
            for split, figures in by_split.items():
                got = composed_route[section][name][split]
                assert got == pytest.approx(figures, abs=1e-6), (section, name, split)

    embeddings = ConceptEmbeddings.load(config.concepts_dir)
    with open(os.path.join(config.segmenter_dir, "assets", "supervised_concepts.txt")) as f:
        supervised = f.read().split("\n")[:-1]
    models = config.models_dir
    calibration = saved_route["calibration"]
    by_hand = ConceptMask(
        load_stage_model(os.path.join(models, "refinement"), "refinement"),
        load_stage_model(os.path.join(models, "segmentation"), "segmentation"), 64,
        (1.0, 2.0), embeddings.vectors_for(supervised), weak_theta=calibration["theta"],
        presence_threshold=calibration["threshold"], presence_scale=calibration["scale"],
        presence_embedding=load_stage_model(os.path.join(models, "embedding"), "embedding"))
    image = np.random.default_rng(1).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    vectors = embeddings.vectors_for(["sky", "dog", supervised[0]])
    served = tf.saved_model.load(export_paths(config)["saved_model"]).signatures[
        "serving_default"](image=tf.constant(image), word_vectors=tf.constant(vectors))
    expected = by_hand({"image": image[None].astype(np.float32),
                        "word_vectors": vectors[None]}, training=False)
    np.testing.assert_allclose(served["mask_probs"].numpy(),
                               np.asarray(expected["mask_probs"])[0], atol=1e-5)
    np.testing.assert_allclose(served["presence"].numpy(),
                               np.asarray(expected["presence"])[0], atol=1e-5)


@pytest.mark.slow
def test_demo_writes_world_vectors_and_report(first_run):
    embeddings = ConceptEmbeddings.load(first_run.pipeline.config.concepts_dir)
    assert embeddings.vectors.shape[1] == 8
    assert os.path.exists(os.path.join(first_run.pipeline.config.concepts_dir, "overlap.npz"))
    assert os.path.getsize(first_run.preview) > 1000
    with open(first_run.neighbours) as f:
        neighbours = json.load(f)
    # Two concepts per supervision level, each with 5 neighbours sorted by cosine.
    assert {entry["split"] for entry in neighbours.values()} == {
        "strong", "weak_box", "weak_image", "zero_shot"}
    for concept, entry in neighbours.items():
        cosines = [c for _, c in entry["nearest"]]
        assert len(cosines) == 5 and cosines == sorted(cosines, reverse=True)
        assert concept not in [n for n, _ in entry["nearest"]]
    for path in (first_run.data_root, first_run.pipeline.config.concepts_dir,
                 first_run.preview):
        assert path in first_run.text


@pytest.mark.slow
def test_rerun_reuses_finished_steps(first_run):
    vectors_path = os.path.join(first_run.pipeline.config.concepts_dir, "word_vectors.npy")
    before = os.path.getmtime(vectors_path)
    again = demo.run_demo(first_run.work_dir, TINY, dim=8, progress=False,
                          pipeline_options={**TINY_PIPELINE, "evaluate": False},
                          announce=lambda _: None)
    assert "reusing" in again.text
    assert set(again.pipeline.steps.values()) == {"reused"}
    assert os.path.getmtime(vectors_path) == before


def test_nearest_concepts_ranks_by_cosine():
    from conceptmask_tf.concepts.vocabulary import Vocabulary

    vocab = Vocabulary(("a", "b", "c"), np.array([3, 2, 1]), num_images=4)
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1]], np.float32)
    embeddings = ConceptEmbeddings(vocab, vectors)
    got = demo.nearest_concepts(embeddings, "a", k=2)
    assert [n for n, _ in got] == ["b", "c"]
    np.testing.assert_allclose(got[0][1], 0.9 / np.hypot(0.9, 0.1), rtol=1e-6)
