"""ConceptMaskSegmenter: assembly, one saved folder, loading, and the Python API."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf import ConceptMaskSegmenter
from conceptmask_tf.assembly import segmenter as segmenter_lib
from conceptmask_tf.assembly.stage_networks import StageNetworks, supervised_concepts
from conceptmask_tf.errors import DataError, UnknownConceptError
from conceptmask_tf.models import ConceptMask
from conceptmask_tf.models.stage_files import load_stage_model
from tests.serving.conftest import CALIBRATION, SUPERVISED, random_image

INITIAL = {"threshold": 0.0, "scale": 10.0, "theta": 0.5}  # ConceptMask's defaults
CONCEPTS = ["dog", "cloud", "red car", "hot dog"]  # supervised, weak, phrase, vocabulary phrase


def _outputs(model, embeddings, concepts, image):
    vectors = embeddings.vectors_for(concepts)[None]
    return {k: np.asarray(v)[0] for k, v in model(
        {"image": image[None].astype(np.float32), "word_vectors": vectors},
        training=False).items()}


def test_assembled_model_is_the_previous_composition(tiny_work_dir, tiny_segmenter):
    """The same networks composed by hand as evaluation and export did before assembly."""
    models = tiny_work_dir / "models"
    embedding = load_stage_model(str(models / "embedding"), "embedding")
    by_hand = ConceptMask(load_stage_model(str(models / "refinement"), "refinement"),
                          load_stage_model(str(models / "segmentation"), "segmentation"),
                          32, (1.0, 2.0), tiny_segmenter.embeddings.vectors_for(SUPERVISED),
                          weak_theta=CALIBRATION["theta"],
                          presence_threshold=CALIBRATION["threshold"],
                          presence_scale=CALIBRATION["scale"], presence_embedding=embedding)
    image = random_image(24, 20, seed=5)
    expected = _outputs(by_hand, tiny_segmenter.embeddings, CONCEPTS, image)
    got = _outputs(tiny_segmenter.model, tiny_segmenter.embeddings, CONCEPTS, image)
    for key in ("mask_probs", "presence", "similarity", "attention"):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-6, err_msg=key)
    assert tiny_segmenter.supervised_concepts == ["dog", "sky", "car"]


def test_saved_folder_round_trips_outputs_calibration_and_vocabulary(tiny_work_dir,
                                                                     tiny_segmenter):
    path = tiny_work_dir / "concept_mask"
    assert sorted(os.listdir(path)) == ["assets", "config.json", "metadata.json",
                                        "model.weights.h5"]
    assert sorted(os.listdir(path / "assets")) == [
        "calibration.json", "concepts.tsv", "supervised_concepts.txt", "word_vectors.npy"]
    loaded = ConceptMaskSegmenter.from_preset(str(path))
    assert loaded.model.calibration() == pytest.approx(CALIBRATION)
    assert loaded.supervised_concepts == tiny_segmenter.supervised_concepts
    assert loaded.calibration["source"] == "set by the test"
    np.testing.assert_array_equal(loaded.embeddings.vectors, tiny_segmenter.embeddings.vectors)
    image = random_image(30, 18, seed=2)
    got = loaded.predict(image, CONCEPTS)
    expected = tiny_segmenter.predict(image, CONCEPTS)
    np.testing.assert_allclose(got["masks"], expected["masks"], atol=1e-6)
    np.testing.assert_allclose(got["presence"], expected["presence"], atol=1e-6)
    metadata = json.loads((path / "metadata.json").read_text())
    assert metadata["format"] == segmenter_lib.FORMAT and metadata["calibrated"] is True
    assert metadata["source"]["models_dir"] == str(tiny_work_dir / "models")


def test_theta_is_a_weight_that_a_traced_function_sees_without_retracing(tiny_work_dir):
    segmenter = ConceptMaskSegmenter.from_preset(str(tiny_work_dir / "concept_mask"))
    blend = segmenter.model.get_layer("weak_blend")
    assert any(w is blend.theta for w in segmenter.model.non_trainable_weights)
    image = random_image(16, 16, seed=1)
    before = segmenter.predict(image, ["cloud", "dog"])["masks"]
    traces = segmenter._predict.experimental_get_tracing_count()
    segmenter.model.set_weak_theta(1.0)
    after = segmenter.predict(image, ["cloud", "dog"])["masks"]
    assert segmenter._predict.experimental_get_tracing_count() == traces
    assert not np.allclose(before[0, 0], after[0, 0])  # the weak concept's mask moved
    np.testing.assert_allclose(before[0, 1], after[0, 1], atol=1e-6)  # supervised: kept
    with pytest.raises(ValueError, match=r"theta must be in \[0, 1\], got 1.5"):
        segmenter.model.set_weak_theta(1.5)


def test_saving_again_replaces_the_folder(tiny_work_dir, tmp_path):
    segmenter = ConceptMaskSegmenter.from_preset(str(tiny_work_dir / "concept_mask"))
    path = str(tmp_path / "saved")
    segmenter.save_to_preset(path)
    segmenter.model.set_calibration(0.7, 2.0, 1.0)
    segmenter.save_to_preset(path)
    assert ConceptMaskSegmenter.from_preset(path).model.calibration() == pytest.approx(
        {"threshold": 0.7, "scale": 2.0, "theta": 1.0})
    assert sorted(os.listdir(tmp_path)) == ["saved"]  # no staging folder left


def test_predict_takes_names_vectors_lists_and_datasets(tiny_segmenter):
    images = np.stack([random_image(20, 24, seed=s) for s in range(3)])
    by_name = tiny_segmenter.predict(images, CONCEPTS)
    assert by_name["masks"].shape == (3, 4, 20, 24) and by_name["presence"].shape == (3, 4)
    assert by_name["masks"].dtype == np.float32
    by_vector = tiny_segmenter.predict(images, tiny_segmenter.embeddings.vectors_for(CONCEPTS))
    np.testing.assert_allclose(by_vector["masks"], by_name["masks"], atol=1e-6)
    one_at_a_time = [tiny_segmenter.predict(image, CONCEPTS) for image in images]
    np.testing.assert_allclose(np.concatenate([o["masks"] for o in one_at_a_time]),
                               by_name["masks"], atol=1e-5)
    mixed = tiny_segmenter.predict([images[0], random_image(12, 9), images[1]], ["dog"])
    assert [m.shape for m in mixed["masks"]] == [(1, 20, 24), (1, 12, 9), (1, 20, 24)]
    np.testing.assert_allclose(mixed["masks"][2], by_name["masks"][1, :1], atol=1e-5)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(2)
    from_dataset = tiny_segmenter.predict(dataset, CONCEPTS)
    np.testing.assert_allclose(from_dataset["masks"], by_name["masks"], atol=1e-5)


def test_the_segmenter_runs_inside_a_tf_data_map(tiny_segmenter):
    images = np.stack([random_image(16, 16, seed=s) for s in range(2)])
    vectors = tiny_segmenter.word_vectors(["dog", "cloud"])
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(2).map(
        lambda batch: tiny_segmenter(batch, vectors)["presence"])
    presence = next(iter(dataset)).numpy()
    np.testing.assert_allclose(presence, tiny_segmenter.predict(images, ["dog", "cloud"])[
        "presence"], atol=1e-6)


def test_predict_rejects_unknown_concepts_and_bad_images(tiny_segmenter):
    image = random_image(16, 16)
    with pytest.raises(UnknownConceptError, match="zebra"):
        tiny_segmenter.predict(image, ["dog", "zebra"])
    with pytest.raises(ValueError, match="no concept given"):
        tiny_segmenter.predict(image, [])
    with pytest.raises(ValueError, match=r"word vectors must be \[K, 8\], got \(2, 5\)"):
        tiny_segmenter.predict(image, np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"images must be \[B, H, W, 3\] or \[H, W, 3\]"):
        tiny_segmenter.predict(np.zeros((4, 4)), ["dog"])
    with pytest.raises(ValueError, match=r"image 1 must be \[H, W, 3\]"):
        tiny_segmenter.predict([image, np.zeros((4, 4, 4))], ["dog"])


def test_load_segmenter_takes_the_saved_folder_or_assembles_a_models_folder(
        tiny_work_dir, tiny_segmenter, tmp_path, caplog):
    from_models = segmenter_lib.load_segmenter(str(tiny_work_dir / "models"))
    assert from_models.source["segmenter_dir"] == str(tiny_work_dir / "concept_mask")
    assert from_models.model.calibration() == pytest.approx(CALIBRATION)
    for name in ("models", "concepts"):
        os.symlink(tiny_work_dir / name, tmp_path / name)
    with caplog.at_level("WARNING"):
        assembled = segmenter_lib.load_segmenter(str(tmp_path / "models"))
    assert assembled.model.calibration() == pytest.approx(INITIAL)
    assert assembled.calibration == {"skipped": "no data root given"}
    assert "no data root" in caplog.text
    with pytest.raises(FileNotFoundError, match="is neither a saved ConceptMask.*"
                                                "conceptmask-assemble"):
        segmenter_lib.load_segmenter(str(tmp_path))


def test_a_malformed_folder_names_its_file(tiny_work_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved ConceptMask.*conceptmask-assemble"):
        ConceptMaskSegmenter.from_preset(str(tmp_path))
    broken = tmp_path / "broken"
    ConceptMaskSegmenter.from_preset(str(tiny_work_dir / "concept_mask")).save_to_preset(
        str(broken))
    (broken / "assets" / "supervised_concepts.txt").write_text("dog\n")
    with pytest.raises(DataError, match="supervised_concepts.txt.*names 1 supervised "
                                        "concepts for a model with 3"):
        ConceptMaskSegmenter.from_preset(str(broken))
    (broken / "config.json").write_text("{nope")
    with pytest.raises(DataError, match="config.json.*not valid JSON"):
        ConceptMaskSegmenter.from_preset(str(broken))


def _networks(tmp_path, runtime):
    refinement = tmp_path / "refinement"
    refinement.mkdir(parents=True)
    (refinement / "config.json").write_text(json.dumps({"stage": "refinement",
                                                        "runtime": runtime}))
    return StageNetworks(str(tmp_path), {}, {"refinement": str(refinement)}, [], 32,
                         (1.0, 2.0), ())


def test_supervised_concepts_need_no_data_root_but_use_it_when_given(tmp_path, tiny_model):
    _, embeddings, _ = tiny_model
    networks = _networks(tmp_path, {"target_concepts": ["sky", "zebra"]})
    assert supervised_concepts(networks, None, embeddings) == (
        ["sky"], "refinement target_concepts")
    bare = _networks(tmp_path / "bare", {})
    assert supervised_concepts(bare, None, embeddings) == ([], "none")
    root = tmp_path / "root"
    root.mkdir()
    (root / "splits.json").write_text(json.dumps({"strong": ["dog"], "weak_box": ["cat"],
                                                  "weak_image": ["cloud"], "zero_shot": []}))
    assert supervised_concepts(bare, str(root), embeddings) == (["dog", "cat"], "splits.json")


def test_missing_inputs_name_the_path_and_the_producer(tmp_path, tiny_work_dir):
    with pytest.raises(FileNotFoundError, match="nothing/concepts.tsv does not exist.*"
                                                "conceptmask-concepts"):
        ConceptMaskSegmenter.assemble(str(tiny_work_dir / "models"),
                                      concepts_dir=str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="models is not a directory.*"
                                                "conceptmask-pipeline"):
        ConceptMaskSegmenter.assemble(str(tmp_path / "models"), str(tiny_work_dir / "concepts"))
    (tmp_path / "models").mkdir()
    with pytest.raises(FileNotFoundError, match="embedding.keras.*conceptmask-train-embedding"):
        ConceptMaskSegmenter.assemble(str(tmp_path / "models"), str(tiny_work_dir / "concepts"))


@pytest.mark.slow
def test_assemble_binary_writes_a_loadable_folder_and_names_what_is_missing(tiny_work_dir,
                                                                            tmp_path):
    import subprocess
    import sys

    root = tmp_path / "root"
    root.mkdir()  # a data root without validation files: calibration is skipped, said so
    out = tmp_path / "saved"

    def assemble(*args):
        return subprocess.run([sys.executable, "-m", "conceptmask_tf.bin.assemble", *args],
                              capture_output=True, text=True, timeout=300, check=False)

    done = assemble(f"--model_dir={tiny_work_dir / 'models'}", f"--data_root={root}",
                    f"--out_dir={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"saved ConceptMask: {out}" in done.stdout
    assert "supervised concepts: 3 (refinement target_concepts)" in done.stdout
    assert "calibration: none (no validation file" in done.stdout
    loaded = ConceptMaskSegmenter.from_preset(str(out))
    assert loaded.supervised_concepts == SUPERVISED
    assert loaded.model.calibration() == pytest.approx(INITIAL)
    failed = assemble(f"--model_dir={tmp_path / 'nothing'}", f"--data_root={root}")
    assert failed.returncode == 1  # no word vectors beside the missing models folder
    assert (f"conceptmask-assemble: {tmp_path / 'concepts' / 'concepts.tsv'} does not exist"
            in failed.stderr)
