"""export_saved_model: TF Serving layout, atomic versions, models.config, the binary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.errors import DataError
from conceptmask_tf.serving import exporter, signatures
from conceptmask_tf.serving.exporter import (
    export_saved_model,
    next_version,
    read_models_config,
    write_models_config,
)
from tests.serving.conftest import CALIBRATION, DIM, MAX_SIDE

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _entries(path):
    return [(e.name, e.base_path, e.model_platform)
            for e in read_models_config(path).model_config_list.config]


def test_versions_are_the_integer_folders_plus_one(tmp_path):
    assert next_version(str(tmp_path / "absent")) == 1
    for name in ("1", "3", "007", "tmp", ".7-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a version")
    assert exporter.existing_versions(str(tmp_path)) == [1, 3, 7]
    assert next_version(str(tmp_path)) == 8


def test_export_writes_the_tf_serving_layout_with_metadata(tiny_export_dir, tiny_model):
    _, embeddings, _ = tiny_model
    version = tiny_export_dir / "conceptmask" / "1"
    assert sorted(os.listdir(tiny_export_dir)) == ["conceptmask", "models.config"]
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert _entries(str(tiny_export_dir / "models.config")) == [
        ("conceptmask", "/models/conceptmask", "tensorflow")]
    metadata = json.loads((version / "assets.extra" / "conceptmask.json").read_text())
    assert metadata["version"] == 1 and metadata["max_image_side"] == MAX_SIDE
    assert metadata["calibration"] == pytest.approx(CALIBRATION)
    assert metadata["image_size"] == 32 and metadata["attention_scales"] == [1.0, 2.0]
    assert metadata["signatures"]["serving_default"]["inputs"] == {
        "image": ["uint8", [None, None, 3]], "word_vectors": ["float32", [None, DIM]]}
    stored = ConceptEmbeddings.load(str(version / "assets.extra"))
    assert stored.vocabulary.concepts == embeddings.vocabulary.concepts
    np.testing.assert_array_equal(stored.vectors, embeddings.vectors)


@pytest.mark.slow
def test_new_versions_count_up_and_existing_ones_are_never_overwritten(tmp_path, tiny_model):
    model, embeddings, _ = tiny_model
    (tmp_path / "conceptmask" / "2").mkdir(parents=True)
    (tmp_path / "conceptmask" / "2" / "keep.txt").write_text("version 2")
    path = export_saved_model(model, embeddings, str(tmp_path), serving_root="/srv")
    assert path == str(tmp_path / "conceptmask" / "3")
    assert (tmp_path / "conceptmask" / "3" / "saved_model.pb").is_file()
    for version in (2, 3):
        with pytest.raises(FileExistsError, match=f"conceptmask/{version} already exists: a "
                                                  "version is never overwritten.*next: 4"):
            export_saved_model(model, embeddings, str(tmp_path), version=version)
    assert (tmp_path / "conceptmask" / "2" / "keep.txt").read_text() == "version 2"
    assert _entries(str(tmp_path / "models.config")) == [
        ("conceptmask", "/srv/conceptmask", "tensorflow")]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no staging left


def test_a_failed_write_leaves_no_version_behind(tmp_path, tiny_model, monkeypatch):
    model, embeddings, _ = tiny_model
    build = signatures.build_archive

    def half_written(path, **kwargs):  # writes part of a SavedModel, then fails
        os.makedirs(path)
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"\x08half")
        raise OSError("disk full")

    def failing_archive(*args, **kwargs):
        archive = build(*args, **kwargs)
        archive.write_out = half_written
        return archive

    monkeypatch.setattr(signatures, "build_archive", failing_archive)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(model, embeddings, str(tmp_path))
    assert os.listdir(tmp_path) == ["conceptmask"]  # no staging folder, no models.config
    assert os.listdir(tmp_path / "conceptmask") == []
    assert next_version(str(tmp_path / "conceptmask")) == 1


def test_bad_names_and_versions_are_refused(tmp_path, tiny_model):
    model, embeddings, _ = tiny_model
    for name in ("a/b", "", ".hidden"):
        with pytest.raises(ValueError, match="name must be a plain folder name"):
            export_saved_model(model, embeddings, str(tmp_path), name=name)
    with pytest.raises(ValueError, match="version must be >= 1, got 0"):
        export_saved_model(model, embeddings, str(tmp_path), version=0)


def test_models_config_keeps_other_models_and_rejects_garbage(tmp_path):
    path = str(tmp_path / "models.config")
    write_models_config(str(tmp_path), "other", "/models/other")
    write_models_config(str(tmp_path), "conceptmask", "/models/conceptmask")
    write_models_config(str(tmp_path), "conceptmask", "/elsewhere/conceptmask")
    assert _entries(path) == [("other", "/models/other", "tensorflow"),
                              ("conceptmask", "/elsewhere/conceptmask", "tensorflow")]
    text = (tmp_path / "models.config").read_text()
    assert text.startswith("model_config_list {") and 'name: "conceptmask"' in text
    (tmp_path / "models.config").write_text("model_config_list { nonsense: 1 }")
    with pytest.raises(DataError, match="models.config: not a TF Serving ModelServerConfig"):
        write_models_config(str(tmp_path), "conceptmask", "/models/conceptmask")


def _run_export(*args):
    return subprocess.run([sys.executable, "-m", "conceptmask_tf.bin.export", *args,
                           "--noprogress"], check=False, cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_export_binary_end_to_end(tiny_work_dir, tiny_segmenter, tmp_path):
    export = tmp_path / "export"
    # The models folder: its saved ../concept_mask (tiny_segmenter) is what is exported.
    done = _run_export(f"--model_dir={tiny_work_dir / 'models'}", f"--export_dir={export}")
    assert done.returncode == 0, done.stderr
    assert f"SavedModel (version 1): {export / 'conceptmask' / '1'}" in done.stdout
    assert "calibration: threshold 0.3, scale 4, theta 0.25\n" in done.stdout
    assert f"TF Serving config: {export / 'models.config'}" in done.stdout
    assert (export / "conceptmask" / "1" / "saved_model.pb").is_file()
    assert _entries(str(export / "models.config")) == [
        ("conceptmask", "/models/conceptmask", "tensorflow")]

    failed = _run_export(f"--model_dir={tmp_path / 'none'}", f"--export_dir={export}")
    assert failed.returncode == 1
    assert "conceptmask-export: " in failed.stderr
    assert f"{tmp_path / 'none'} is neither a saved ConceptMask" in failed.stderr
    assert "conceptmask-assemble" in failed.stderr


@pytest.mark.slow
def test_a_model_with_stage1_weak_attention_exports_and_serves_the_same(tmp_path):
    import tensorflow as tf

    from conceptmask_tf.assembly.segmenter import ConceptMaskSegmenter
    from tests.models.tiny import update_model_config
    from tests.serving.conftest import SUPERVISED, concept_embeddings, random_image, write_models

    models = write_models(str(tmp_path / "models"))
    update_model_config(os.path.join(models, "segmentation"), weak_attention="original")
    concept_embeddings().save(str(tmp_path / "concepts"))
    segmenter = ConceptMaskSegmenter.assemble(models, str(tmp_path / "concepts"))
    model, embeddings, info = segmenter.model, segmenter.embeddings, segmenter.info()
    assert model.weak_attention == info["weak_attention"] == "original"
    export_saved_model(model, embeddings, str(tmp_path / "export"), info=info)
    version = tmp_path / "export" / "conceptmask" / "1"
    metadata = json.loads((version / "assets.extra" / "conceptmask.json").read_text())
    assert metadata["weak_attention"] == "original"
    image = random_image(20, 28, seed=4)
    vectors = embeddings.vectors_for([SUPERVISED[0], "cloud", "red car"])  # with weak ones
    served = tf.saved_model.load(str(version)).signatures["serving_default"](
        image=tf.constant(image), word_vectors=tf.constant(vectors))
    expected = model({"image": image[None].astype(np.float32),
                      "word_vectors": vectors[None]}, training=False)
    np.testing.assert_allclose(served["mask_probs"].numpy(), np.asarray(
        expected["mask_probs"])[0], atol=1e-5)
    np.testing.assert_allclose(served["presence"].numpy(), np.asarray(
        expected["presence"])[0], atol=1e-5)
