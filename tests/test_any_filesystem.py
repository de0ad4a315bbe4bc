"""A data root and a work dir on any TensorFlow filesystem: everything through tf.io.gfile.

TensorFlow's in-memory filesystem (ram://) stands in for gs:// and the others: no plain
`open` or `os` call can reach it. A tiny concept world is copied there; every annotation
reader, the concepts step, stage configs, the assembled model, the report and the
pipeline's state then run on ram:// paths and must give what they give on the local copy.

TF 2.21's ram:// lists children by name prefix: beside a folder "a", the entries of
"a.tmp/" or "ab" also show up under "a/" (and `rmtree("ram://.../a")` then fails). The
world generator's staging folder (<root>.tmp) and a SavedModel (assets/ beside
assets.extra/) have such names, so those two run on a "file://" URL instead: the local disk
through tf.io.gfile, equally out of reach of plain `open` and `os` calls.

`test_no_local_file_access_is_left_in_the_converted_modules` keeps it so: it fails when a
plain `open(`, `os.path.exists(`, `np.load(`, ... comes back into those modules.
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import io
import json
import os
import pathlib
import uuid

import numpy as np
import pytest

from conceptmask_tf.base import files
from conceptmask_tf.data.layout import SPLITS, DataRoot
from conceptmask_tf.data.world import WorldConfig, generate_world

WORLD = WorldConfig(seed=5, num_images=24, image_size=32, num_eval_images=8,
                    min_eval_positives=1)
WORD_DIM = 8


def _tree(root: str) -> dict[str, bytes]:
    """{relative path: bytes} of every file under `root`, through tf.io.gfile."""
    import tensorflow as tf

    out = {}
    for folder, _, names in tf.io.gfile.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with tf.io.gfile.GFile(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture(scope="module")
def ram_root():
    """A fresh ram:// folder for this module (the in-memory filesystem is process-wide)."""
    import tensorflow as tf

    root = f"ram://any-filesystem-{uuid.uuid4().hex[:8]}"
    tf.io.gfile.makedirs(root)
    yield root
    tf.io.gfile.rmtree(root)


@pytest.fixture(scope="module")
def worlds(ram_root, tmp_path_factory):
    """(local data root, ram:// data root): a concept world and its copy on ram://."""
    local = str(tmp_path_factory.mktemp("any_filesystem") / "world")
    remote = os.path.join(ram_root, "world")
    generate_world(WORLD, local, progress=False)
    files.copytree(local, remote)
    return local, remote


def _file_url(path: pathlib.Path) -> str:
    return "file://" + str(path)


def test_ram_filesystem_works_with_tf_io_gfile(ram_root):
    import tensorflow as tf

    folder = os.path.join(ram_root, "gfile", "a")
    tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(os.path.join(folder, "x.txt"), "w") as f:
        f.write("hello\n")
    with tf.io.gfile.GFile(os.path.join(folder, "x.txt")) as f:
        assert f.read() == "hello\n"
    assert tf.io.gfile.listdir(folder) == ["x.txt"]
    tf.io.gfile.rename(os.path.join(folder, "x.txt"), os.path.join(folder, "y.txt"),
                       overwrite=True)
    assert not tf.io.gfile.exists(os.path.join(folder, "x.txt"))
    assert tf.io.gfile.exists(os.path.join(folder, "y.txt"))
    assert os.path.exists(folder) is False  # invisible to plain os calls


def test_files_keeps_the_builtin_errors(tmp_path, ram_root):
    local = str(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError) as builtin:
        open(local)  # noqa: SIM115 - the reference message
    with pytest.raises(FileNotFoundError) as ours:
        files.open_file(local)
    assert str(ours.value) == str(builtin.value)
    assert ours.value.errno == errno.ENOENT and ours.value.filename == local
    remote = os.path.join(ram_root, "missing.txt")
    with pytest.raises(FileNotFoundError, match=f"No such file or directory: '{remote}'"):
        files.read_json(remote)
    with pytest.raises(FileNotFoundError):
        files.open_file(str(tmp_path / "no_folder" / "x.txt"), "w")
    with pytest.raises(FileNotFoundError):
        files.listdir(str(tmp_path / "no_folder"))
    with pytest.raises(FileExistsError):
        files.makedirs(str(tmp_path), exist_ok=False)
    root = DataRoot(ram_root)
    with pytest.raises(FileNotFoundError, match=f"under data root '{ram_root}'.*"
                                                f"{root.splits} does not exist"):
        root.require(root.splits, "the test")


def test_files_streams_and_moves_on_ram(ram_root):
    folder = os.path.join(ram_root, "streams")
    files.makedirs(os.path.join(folder, "tree", "sub"))
    text = "\ufeffImageID,Name\r\nä,b\n"
    with files.open_file(os.path.join(folder, "tree", "a.csv"), "w", encoding="utf-8") as f:
        f.write(text)
    with files.open_file(os.path.join(folder, "tree", "a.csv"), encoding="utf-8-sig",
                         newline="") as f:
        assert f.read() == text[1:]
    files.save_npy(os.path.join(folder, "tree", "sub", "v.npy"), np.arange(6.0).reshape(2, 3))
    files.save_npz(os.path.join(folder, "tree", "o.npz"), a=np.arange(3),
                   s=np.asarray(["x", "yy"]))
    files.write_atomically(os.path.join(folder, "tree", "r.json"), json.dumps({"a": 1}))
    files.write_atomically(os.path.join(folder, "tree", "r.json"), json.dumps({"a": 2}))
    assert files.read_json(os.path.join(folder, "tree", "r.json")) == {"a": 2}
    np.testing.assert_array_equal(files.load_npz(os.path.join(folder, "tree", "o.npz"))["s"],
                                  ["x", "yy"])
    assert files.getsize(os.path.join(folder, "tree", "a.csv")) == len(text.encode())

    before = _tree(os.path.join(folder, "tree"))
    files.rename(os.path.join(folder, "tree"), os.path.join(folder, "moved"))
    assert not files.exists(os.path.join(folder, "tree"))
    assert _tree(os.path.join(folder, "moved")) == before  # the files inside moved too
    assert sorted(before) == ["a.csv", "o.npz", "r.json", os.path.join("sub", "v.npy")]
    files.makedirs(os.path.join(folder, "other"))
    with pytest.raises(FileExistsError):
        files.rename(os.path.join(folder, "moved"), os.path.join(folder, "other"))
    np.testing.assert_array_equal(files.load_npy(os.path.join(folder, "moved", "sub", "v.npy")),
                                  np.arange(6.0).reshape(2, 3))
    assert files.normpath("gs://bucket/work/models/../concepts") == "gs://bucket/work/concepts"


def test_the_world_on_ram_is_the_local_world(worlds):
    local, remote = worlds
    assert _tree(remote) == _tree(local)
    assert not os.path.exists(remote)


def test_the_world_is_generated_on_a_file_url(worlds, tmp_path):
    url = _file_url(tmp_path / "world")
    generate_world(WORLD, url, progress=False)
    assert _tree(url) == _tree(worlds[0])  # byte-identical
    assert sorted(os.listdir(tmp_path)) == ["world"]  # no staging folder left
    generate_world(WORLD, url, overwrite=True, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["world"]


def test_annotation_readers_read_a_ram_data_root(worlds):
    from conceptmask_tf.data import boxes, coco, open_images, splits, tags, visual_genome

    results = []
    for root in map(DataRoot, worlds):
        results.append({
            "manifest": tags.read_tag_manifest(root.tags),
            "corpus": tags.read_tag_corpus(root.tags, with_images=True, chunk_bytes=512),
            "oi_labels": tags.read_oi_image_labels(root.oi_image_labels,
                                                   root.oi_class_descriptions),
            "oi_label_corpus": tags.read_oi_label_corpus(root.oi_image_labels,
                                                         root.oi_class_descriptions),
            "coco": coco.read_coco_instances(root.coco_instances),
            "oi_boxes": open_images.read_oi_boxes(
                root.oi_boxes, open_images.read_class_descriptions(root.oi_class_descriptions),
                image_dir=root.images_dir),
            "vg": visual_genome.read_vg_objects(root.vg_objects, root.vg_image_data,
                                                image_dir=root.images_dir),
            "boxes": boxes.load_box_images(root),
            "splits": splits.read_splits(root.splits),
            "truth": [splits.read_split_ground_truth(root, split, which)
                      for split in SPLITS for which in ("eval", "val")],
        })
    local, remote = results
    assert remote["manifest"] and remote["coco"] and remote["oi_boxes"] and remote["vg"]
    assert any(remote["truth"])
    for key in ("manifest", "oi_labels", "coco", "oi_boxes", "vg", "boxes", "splits",
                "truth"):
        assert remote[key] == local[key], key
    for key in ("corpus", "oi_label_corpus"):
        for field in dataclasses.fields(local[key]):
            a, b = getattr(local[key], field.name), getattr(remote[key], field.name)
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(b, a)
            else:
                assert b == a, (key, field.name)


def test_concepts_are_built_and_loaded_on_ram(worlds):
    from conceptmask_tf.concepts import build, diagnostics
    from conceptmask_tf.concepts.concept_sets import load_training_concepts
    from conceptmask_tf.concepts.embeddings import ConceptEmbeddings, require_concepts
    from conceptmask_tf.concepts.overlap import OverlapMatrix

    loaded = []
    for root in worlds:
        out = files.normpath(os.path.join(root, os.pardir, "concepts"))
        build.build_concepts(DataRoot(root).tags, out, WORD_DIM, data_root=root,
                             overlap_source="both")
        require_concepts(out)
        embeddings = ConceptEmbeddings.load(out)
        overlap = OverlapMatrix.load(os.path.join(out, build.OVERLAP_FILE))
        training = load_training_concepts(root, out)
        loaded.append((embeddings, overlap, diagnostics.load_diagnostics(out), training))
    (local, local_overlap, local_diag, local_training), remote_all = loaded
    remote, remote_overlap, remote_diag, remote_training = remote_all
    assert worlds[1].startswith("ram://") and remote.vectors.shape[1] == WORD_DIM
    assert remote.vocabulary.concepts == local.vocabulary.concepts
    np.testing.assert_array_equal(remote.vectors, local.vectors)
    assert remote_overlap.concepts == local_overlap.concepts
    np.testing.assert_array_equal(remote_overlap.gamma, local_overlap.gamma)
    assert remote_diag == local_diag
    assert remote_training.held_out == local_training.held_out


def test_stage_config_round_trips_on_ram(ram_root):
    from conceptmask_tf.models.stage_files import read_stage_config
    from conceptmask_tf.training.config import EmbeddingConfig, load_config, save_config

    model_dir = os.path.join(ram_root, "models", "embedding")
    config = EmbeddingConfig(data_root=os.path.join(ram_root, "world"),
                             concepts_dir=os.path.join(ram_root, "concepts"),
                             model_dir=model_dir, epochs=3)
    path = save_config(config, model_dir, {"replicas": 1})
    assert path == os.path.join(model_dir, "config.json")
    assert load_config(model_dir) == config
    assert read_stage_config(model_dir)["runtime"] == {"replicas": 1}
    assert files.listdir(model_dir) == ["config.json"]  # no temporary file left
    with pytest.raises(FileNotFoundError, match="is not the model dir"):
        load_config(os.path.join(ram_root, "models", "nothing"))


@pytest.mark.slow
def test_segmenter_saves_to_and_loads_from_ram(tmp_path, ram_root):
    import tensorflow as tf

    from conceptmask_tf.assembly.segmenter import (
        ConceptMaskSegmenter,
        is_saved_segmenter,
        load_segmenter,
    )
    from tests.serving.conftest import concept_embeddings, random_image, write_models

    models = write_models(str(tmp_path / "models"))
    concept_embeddings().save(str(tmp_path / "concepts"))
    segmenter = ConceptMaskSegmenter.assemble(models)
    segmenter.model.set_calibration(threshold=0.3, scale=4.0, theta=0.25)
    images = np.stack([random_image(32, 32, seed) for seed in range(2)])
    expected = segmenter.predict(images, ["dog", "red car"])

    work = os.path.join(ram_root, "work")
    saved = os.path.join(work, "concept_mask")
    assert segmenter.save_to_preset(saved) == saved
    assert segmenter.save_to_preset(saved) == saved  # replaces the existing folder
    assert is_saved_segmenter(saved) and files.listdir(work) == ["concept_mask"]
    assert not os.path.exists(saved)
    loaded = ConceptMaskSegmenter.from_preset(saved)
    outputs = loaded.predict(images, ["dog", "red car"])
    np.testing.assert_allclose(outputs["masks"], expected["masks"], atol=1e-6)
    np.testing.assert_allclose(outputs["presence"], expected["presence"], atol=1e-6)
    assert loaded.model.calibration() == pytest.approx(segmenter.model.calibration())
    assert loaded.supervised_concepts == segmenter.supervised_concepts
    assert loaded.source["segmenter_dir"] == saved

    # A models folder on ram:// assembles too, and its ../concept_mask is found.
    files.copytree(models, os.path.join(work, "models"))
    files.copytree(str(tmp_path / "concepts"), os.path.join(work, "concepts"))
    again = ConceptMaskSegmenter.assemble(os.path.join(work, "models"))
    assert again.supervised_concepts == segmenter.supervised_concepts
    assert load_segmenter(os.path.join(work, "models")).source["segmenter_dir"] == saved

    from conceptmask_tf.serving.exporter import (
        existing_versions,
        export_saved_model,
        read_models_config,
    )

    export = _file_url(tmp_path / "export")  # a SavedModel's names trip ram:// (see top)
    version = export_saved_model(loaded.model, loaded.embeddings, export,
                                 info=loaded.info())
    assert version == os.path.join(export, "conceptmask", "1")
    assert existing_versions(os.path.join(export, "conceptmask")) == [1]
    assert sorted(files.listdir(export)) == ["conceptmask", "models.config"]
    entry = read_models_config(os.path.join(export, "models.config")).model_config_list.config
    assert [e.name for e in entry] == ["conceptmask"]
    metadata = files.read_json(os.path.join(version, "assets.extra", "conceptmask.json"))
    assert metadata["version"] == 1
    served = tf.saved_model.load(version)
    assert "serving_default" in served.signatures


def test_report_is_written_to_ram(tmp_path, ram_root):
    from conceptmask_tf.evaluation import report as report_lib
    from tests.evaluation.test_report import make_report

    local = report_lib.write_report(make_report(), str(tmp_path / "report"))
    out_dir = os.path.join(ram_root, "report")
    remote = report_lib.write_report(make_report(), out_dir)
    assert remote == (os.path.join(out_dir, "report.json"), os.path.join(out_dir, "report.md"))
    assert sorted(files.listdir(out_dir)) == ["report.json", "report.md"]
    for local_path, remote_path in zip(local, remote, strict=True):
        assert files.read_text(remote_path) == pathlib.Path(local_path).read_text("utf-8")


def test_models_config_on_ram(ram_root):
    from conceptmask_tf.serving.exporter import read_models_config, write_models_config

    export = os.path.join(ram_root, "serving")
    files.makedirs(export)
    write_models_config(export, "other", "/models/other")
    path = write_models_config(export, "conceptmask", "/models/conceptmask")
    entries = read_models_config(path).model_config_list.config
    assert [(e.name, e.base_path) for e in entries] == [("other", "/models/other"),
                                                        ("conceptmask", "/models/conceptmask")]
    assert files.listdir(export) == ["models.config"]


def _write_image(path: str, pixels: np.ndarray) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG" if path.endswith(".png") else "JPEG")
    files.write_atomically(path, buffer.getvalue())


def _read_image(path: str) -> np.ndarray:
    from PIL import Image

    with files.open_file(path, "rb") as f, Image.open(f) as image:
        return np.asarray(image)


def test_segment_reads_and_writes_on_ram(tmp_path, ram_root):
    """conceptmask-segment's library with the saved model, the images, the word vectors and
    the output folder on ram://."""
    from conceptmask_tf.assembly.segmenter import ConceptMaskSegmenter
    from conceptmask_tf.errors import DataError
    from conceptmask_tf.serving import segment as segment_lib
    from conceptmask_tf.serving.runtimes import load_runner
    from tests.serving.conftest import concept_embeddings, random_image, write_models

    work = os.path.join(ram_root, "segment")
    model = os.path.join(work, "concept_mask")
    concept_embeddings().save(str(tmp_path / "concepts"))
    ConceptMaskSegmenter.assemble(write_models(str(tmp_path / "models"))).save_to_preset(model)
    sizes = {"wide.png": (20, 36), "tall.jpg": (30, 18)}
    images = [os.path.join(work, "images", name) for name in sizes]
    for seed, (path, (height, width)) in enumerate(zip(images, sizes.values())):
        _write_image(path, random_image(height, width, seed))
    out = os.path.join(work, "out")

    result = segment_lib.segment(model, images, out, concepts=["dog", "red car"],
                                 progress=False)
    assert (result["model"], result["runtime"]) == (model, "keras")
    assert files.read_json(os.path.join(out, segment_lib.SUMMARY_FILE)) == result
    assert sorted(files.listdir(out)) == ["segments.json", "tall", "wide"]  # no temp file
    for entry, (height, width) in zip(result["images"], sizes.values(), strict=True):
        assert (entry["height"], entry["width"]) == (height, width)
        assert sorted(files.listdir(os.path.join(out, entry["folder"]))) == [
            "dog_mask.png", "dog_overlay.png", "red_car_mask.png", "red_car_overlay.png"]
        for item in entry["concepts"]:
            mask = _read_image(os.path.join(out, item["mask"]))
            assert mask.shape == (height, width) and set(np.unique(mask)) <= {0, 255}
            assert mask.mean() / 255 == pytest.approx(item["mask_fraction"])
            assert _read_image(os.path.join(out, item["overlay"])).shape == (height, width, 3)
    assert not os.path.exists(out)

    runner = load_runner(model)
    vectors = os.path.join(work, "vectors.npy")
    files.save_npy(vectors, concept_embeddings().vectors[:2])
    names, got = segment_lib.resolve_concepts(runner, word_vectors=vectors)
    assert names == ["vector_0", "vector_1"]
    np.testing.assert_array_equal(got, concept_embeddings().vectors[:2])
    files.write_atomically(os.path.join(work, "images", "cut.png"), b"\x89PNG\r\n")
    for name, message in (("gone.png", "missing image file"),
                          ("cut.png", "unreadable image file")):
        path = os.path.join(work, "images", name)
        with pytest.raises(DataError, match=f"{path}: {message}"):
            segment_lib.read_image(path)


def test_converted_models_are_written_to_and_run_from_ram(tmp_path, ram_root):
    """`convert` writes .tflite and .onnx files to ram://, and `load_runner` runs them from
    there (handed to the runtimes as bytes) and a SavedModel from a file:// URL."""
    import tensorflow as tf

    from conceptmask_tf.serving import convert
    from conceptmask_tf.serving.runtimes import load_runner

    class Tiny(tf.Module):
        """The serving signature's names and shapes, a few built-in ops."""

        @tf.function(input_signature=[
            tf.TensorSpec([None, None, 3], tf.uint8, name="image"),
            tf.TensorSpec([None, 4], tf.float32, name="word_vectors")])
        def serve(self, image, word_vectors):
            grey = tf.reduce_mean(tf.cast(image, tf.float32), axis=-1) / 255.0
            probs = tf.sigmoid(tf.reduce_sum(word_vectors, 1)[:, None, None]
                               * (grey[None] - 0.5) * 8.0)
            return {"masks": tf.cast(probs >= 0.5, tf.uint8), "mask_probs": probs,
                    "presence": tf.reduce_max(probs, axis=[1, 2])}

    module = Tiny()
    saved = _file_url(tmp_path / "export" / "conceptmask" / "3")  # see the top on ram://
    tf.saved_model.save(module, saved, signatures={"serving_default": module.serve})
    reference = load_runner(os.path.dirname(saved))  # the highest version, found by files
    assert (reference.kind, reference.path, reference.dim) == ("saved_model", saved, 4)
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), np.uint8)
    vectors = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    expected = reference(image, vectors)

    out = os.path.join(ram_root, "converted")
    written = [convert.to_tflite(saved, os.path.join(out, "m.tflite")),
               convert.to_onnx(saved, os.path.join(out, "m.onnx"))]
    assert sorted(files.listdir(out)) == ["m.onnx", "m.tflite"]  # no temporary file left
    for path, kind in zip(written, ("tflite", "onnx"), strict=True):
        runner = load_runner(path)
        assert (runner.kind, runner.path, runner.dim) == (kind, path, 4)
        outputs = runner(image, vectors)
        np.testing.assert_allclose(outputs["mask_probs"], expected["mask_probs"], atol=1e-5)
        np.testing.assert_allclose(outputs["presence"], expected["presence"], atol=1e-5)
    with pytest.raises(FileNotFoundError, match=f"{out}/none.onnx does not exist"):
        load_runner(os.path.join(out, "none.onnx"))


def test_pipeline_state_and_stamp_on_ram(worlds, ram_root):
    from conceptmask_tf import pipeline

    config = pipeline.PipelineConfig(data_root=worlds[1],
                                     work_dir=os.path.join(ram_root, "pipeline"))
    files.makedirs(config.work_dir)
    pipeline._save_state(config.work_dir, {"seconds": {"concepts": 1.5}})
    assert pipeline._load_state(config.work_dir) == {"seconds": {"concepts": 1.5}}
    assert files.listdir(config.work_dir) == [pipeline.STATE_FILE]
    stamp = pipeline._concepts_stamp(config)
    assert stamp["tags"] == DataRoot(worlds[1]).tags
    assert stamp["tags_size"] == files.getsize(DataRoot(worlds[1]).tags) > 0
    assert not pipeline._concepts_match(config)
    files.makedirs(config.concepts_dir)
    files.write_json(os.path.join(config.concepts_dir, pipeline._CONCEPTS_STAMP), stamp)
    assert pipeline._concepts_match(config)
    assert pipeline.export_paths(config)["saved_model"] is None
    assert not pipeline._exported(config)


# -- no local file access left ------------------------------------------------------------

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "conceptmask_tf"
# The modules that read or write the data root, the concept files, the model folders, the
# assembled model, the report, the export, the converted models, the served models, the
# segmented images and the pipeline's state.
CONVERTED = (
    "data/boxes.py", "data/coco.py", "data/images.py", "data/layout.py", "data/open_images.py",
    "data/records.py", "data/skips.py", "data/splits.py", "data/tags.py",
    "data/visual_genome.py", "data/world/writer.py",
    "concepts/build.py", "concepts/concept_sets.py", "concepts/cooccurrence.py",
    "concepts/diagnostics.py", "concepts/embeddings.py", "concepts/overlap.py",
    "concepts/overlap_sources.py", "concepts/vocabulary.py", "concepts/word_vectors.py",
    "models/stage_files.py", "training/config.py", "training/summary_images.py",
    "assembly/calibration.py", "assembly/segmenter.py", "assembly/stage_networks.py",
    "evaluation/eval_set.py", "evaluation/evaluator.py", "evaluation/pictures.py",
    "evaluation/report.py", "serving/convert.py", "serving/exporter.py",
    "serving/runtimes.py", "serving/segment.py", "pipeline.py",
)
# Calls that touch the local filesystem only (`module.function` as written in the source).
LOCAL_CALLS = frozenset({
    "open", "os.open", "os.fdopen", "io.open",
    "os.path.exists", "os.path.isdir", "os.path.isfile", "os.path.getsize",
    "os.path.getmtime", "os.path.lexists", "os.path.abspath", "os.path.realpath",
    "os.listdir", "os.scandir", "os.walk", "os.stat", "os.makedirs", "os.mkdir",
    "os.replace", "os.rename", "os.remove", "os.unlink", "os.rmdir",
    "np.save", "np.savez", "np.savez_compressed", "np.loadtxt", "np.fromfile",
})
# Calls that take a path or an open file (argument index): only a handle bound by
# `with files.open_file(...) as handle`, or `io.BytesIO(...)` of bytes in memory, may be
# passed.
HANDLE_CALLS = {"Image.open": 0, "pacsv.read_csv": 0, "pa_csv.read_csv": 0, "np.load": 0,
                "json.load": 0, "json.dump": 1}
# What legitimately stays local, with the reason.
ALLOWED = {
    # The TFLite and ONNX converters (serving/convert.py) read and write local files only:
    # the conversions run in a local temporary folder, whose results are copied over to an
    # export dir on another filesystem.
    ("serving/exporter.py", "tempfile.TemporaryDirectory"),
    # tf2onnx writes its output to a local scratch folder; convert.py reads it back and
    # writes it to the output path through base.files.
    ("serving/convert.py", "tempfile.TemporaryDirectory"),
}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _local_calls(source: str, label: str) -> list[str]:
    """The calls of `source` that reach the local filesystem only, as "label:line name"."""
    tree = ast.parse(source)
    handles = {item.optional_vars.id
               for node in ast.walk(tree) if isinstance(node, ast.With)
               for item in node.items
               if isinstance(item.context_expr, ast.Call)
               and _dotted(item.context_expr.func) == "files.open_file"
               and isinstance(item.optional_vars, ast.Name)}
    found = []
    for node in ast.walk(tree):
        name = _dotted(node.func) if isinstance(node, ast.Call) else None
        if name is None or (label, name) in ALLOWED:
            continue
        if name in HANDLE_CALLS:
            index = HANDLE_CALLS[name]
            argument = node.args[index] if len(node.args) > index else None
            in_memory = (isinstance(argument, ast.Call)  # bytes already read, e.g. by files
                         and _dotted(argument.func) == "io.BytesIO")
            if not (in_memory or isinstance(argument, ast.Name) and argument.id in handles):
                where = f"{label}:{node.lineno} {name}(...) not on a files.open_file handle"
                found.append((node.lineno, where))
        elif name in LOCAL_CALLS or name.startswith(("tempfile.", "shutil.")):
            found.append((node.lineno, f"{label}:{node.lineno} {name}(...)"))
    return [text for _, text in sorted(found)]


def test_no_local_file_access_is_left_in_the_converted_modules():
    """Every file access of these modules goes through `conceptmask_tf.base.files`."""
    found = [call for relative in CONVERTED
             for call in _local_calls((PACKAGE / relative).read_text(encoding="utf-8"),
                                      relative)]
    assert not found, ("plain local file access (use conceptmask_tf.base.files, which goes "
                       "through tf.io.gfile, or allow-list it with a reason):\n  "
                       + "\n  ".join(found))


def test_the_check_catches_local_file_access():
    source = (
        "import json, os, shutil\n"
        "import numpy as np\n"
        "from PIL import Image\n"
        "from conceptmask_tf.base import files\n"
        "def f(path):\n"
        "    with open(path) as g:\n"
        "        json.load(g)\n"
        "    os.path.exists(path)\n"
        "    np.load(path)\n"
        "    Image.open(path)\n"
        "    shutil.rmtree(path)\n"
        "    with files.open_file(path, 'rb') as h, Image.open(h) as image:\n"
        "        np.load(h)\n"
        "    with files.open_file(path, 'w') as h:\n"
        "        json.dump({}, h)\n"
        "    Image.open(io.BytesIO(b''))\n"
        "    return os.path.join(path, 'x'), image\n")
    found = _local_calls(source, "fake.py")
    assert [line.split()[:2] for line in found] == [
        ["fake.py:6", "open(...)"], ["fake.py:7", "json.load(...)"],
        ["fake.py:8", "os.path.exists(...)"], ["fake.py:9", "np.load(...)"],
        ["fake.py:10", "Image.open(...)"], ["fake.py:11", "shutil.rmtree(...)"]], found


def test_image_checks_and_loads_read_a_ram_data_root(worlds):
    """The host checks (`check_images`), the CLI loader (`load_image`) and the training
    pipelines' reader (`ImageReader`) read images on ram:// as locally."""
    import numpy as np
    import tensorflow as tf

    from conceptmask_tf.data import images
    from conceptmask_tf.data.skips import SkipCounter

    local, remote = worlds
    names = sorted(files.listdir(os.path.join(remote, "images")))[:3]
    paths = [f"images/{n}" for n in names]
    with files.open_file(os.path.join(local, paths[0]), "rb") as f:
        data = f.read()
    files.write_atomically(os.path.join(remote, "images", "cut.jpg"), data[:len(data) // 2])
    skips = SkipCounter()
    assert images.check_images(remote, [*paths, "images/cut.jpg", "images/gone.png"],
                               skips) == [True, True, True, False, False]
    assert skips.as_dict() == {images.TRUNCATED: 1, images.MISSING: 1}
    np.testing.assert_array_equal(images.load_image(os.path.join(remote, paths[0])),
                                  images.load_image(os.path.join(local, paths[0])))
    reader = images.ImageReader(SkipCounter())
    image, ok = reader(tf.constant(os.path.join(remote, paths[1])))
    assert bool(ok)
    np.testing.assert_array_equal(image, images.read_image(os.path.join(local, paths[1])))
