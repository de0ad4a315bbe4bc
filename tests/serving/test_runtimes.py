"""The runners of the saved ConceptMask and the three export runtimes: same outputs, same
input checks."""

import os

import numpy as np
import pytest

from conceptmask_tf.errors import DataError, UnknownConceptError
from conceptmask_tf.serving.runtimes import check_inputs, load_runner, resolve_saved_model
from tests.serving.conftest import concept_embeddings

pytest_plugins = ["tests.serving.convert_fixtures"]

DIM = 8


@pytest.fixture(scope="module")
def runners(sharp_segmenter_dir, sharp_export, sharp_tflite, sharp_onnx):
    """kind -> runner; saved_model is the checked export with its vocabulary."""
    return {"keras": load_runner(sharp_segmenter_dir),
            "saved_model": load_runner(sharp_export["saved_model"]),
            "conversion_source": load_runner(sharp_export["conversion_source"]),
            "tflite": load_runner(sharp_tflite), "onnx": load_runner(sharp_onnx)}


@pytest.mark.slow
def test_runners_know_their_kind_dim_and_vocabulary(runners):
    assert {name: (r.kind, r.dim, r.has_concept_vectors) for name, r in runners.items()} == {
        "keras": ("keras", DIM, True), "saved_model": ("saved_model", DIM, True),
        "conversion_source": ("saved_model", DIM, False),
        "tflite": ("tflite", DIM, False), "onnx": ("onnx", DIM, False)}


@pytest.mark.slow
def test_all_runtimes_give_the_same_outputs(runners, parity_cases, reference_outputs):
    # Alternating sizes and K through the same runners also checks that each runtime
    # re-sizes its buffers per call (TFLite keeps the last call's shapes otherwise).
    for (image, vectors), reference in list(zip(parity_cases, reference_outputs)) * 2:
        for name, runner in runners.items():
            outputs = runner(image, vectors.astype(np.float64))  # float64 is cast
            assert {k: (v.dtype, v.shape) for k, v in outputs.items()} == {
                "masks": (np.uint8, reference["masks"].shape),
                "mask_probs": (np.float32, reference["mask_probs"].shape),
                "presence": (np.float32, (len(vectors),))}, name
            np.testing.assert_allclose(outputs["mask_probs"], reference["mask_probs"],
                                       atol=1e-4, rtol=0, err_msg=name)
            np.testing.assert_allclose(outputs["presence"], reference["presence"], atol=1e-4,
                                       rtol=0, err_msg=name)
            decided = np.abs(reference["mask_probs"] - 0.5) > 1e-4
            np.testing.assert_array_equal(outputs["masks"][decided],
                                          reference["masks"][decided], err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["keras", "saved_model", "conversion_source", "tflite",
                                  "onnx"])
def test_bad_inputs_are_named_before_the_runtime_runs(runners, kind):
    runner = runners[kind]
    image = np.zeros((20, 30, 3), np.uint8)
    vectors = np.ones((2, DIM), np.float32)
    nan = vectors.copy()
    nan[1, 3] = np.nan
    bad = [((image, np.ones((2, 5), np.float32)), r"D = 8 columns .* got shape \(2, 5\)"),
           ((image, np.ones((0, DIM), np.float32)), "empty: K must be >= 1"),
           ((image, np.ones(DIM, np.float32)), r"float32 \[K, 8\], got shape \(8,\)"),
           ((image, nan), r"NaN or Inf \(rows \[1\]\)"),
           ((image, vectors.astype(np.int32)), "float32 .* got dtype int32"),
           ((image.astype(np.float32), vectors), "uint8 .* got dtype float32"),
           ((image[..., 0], vectors), r"\[height, width, 3\] .* got shape \(20, 30\)"),
           ((image[..., :1], vectors), r"got shape \(20, 30, 1\)"),
           ((image[:0], vectors), "image is empty"),
           ((np.zeros((10, 4097, 3), np.uint8), vectors), "too large: .* <= 4096")]
    for (bad_image, bad_vectors), message in bad:
        with pytest.raises(ValueError, match=message):
            runner(bad_image, bad_vectors)


@pytest.mark.slow
def test_saved_model_vocabulary_gives_the_concepts_dir_vectors(runners):
    # The vectors stored in the SavedModel, phrases composed in its graph, against the
    # host-side ConceptEmbeddings of the same concepts.
    concepts = ["dog", "Red  Car", "hot dog", "light red"]
    for kind in ("saved_model", "keras"):
        np.testing.assert_allclose(runners[kind].concept_vectors(concepts),
                                   concept_embeddings().vectors_for(concepts), atol=1e-6)
    with pytest.raises(UnknownConceptError, match="'red blorp': .*vocabulary.*blorp"):
        runners["saved_model"].concept_vectors(["dog", "red blorp"])
    with pytest.raises(UnknownConceptError, match="blorp.*not in the vocabulary"):
        runners["keras"].concept_vectors(["dog", "red blorp"])
    for kind in ("conversion_source", "tflite", "onnx"):
        with pytest.raises(ValueError, match="stores no vocabulary.*concepts dir"):
            runners[kind].concept_vectors(["dog"])


def test_check_inputs_returns_contiguous_float32():
    image = np.zeros((4, 6, 3), np.uint8)[:, ::2]  # a strided view
    checked_image, vectors = check_inputs(image, np.ones((2, 3), np.float64), dim=None)
    assert checked_image.flags.c_contiguous and vectors.dtype == np.float32
    np.testing.assert_array_equal(checked_image, image)


def test_saved_model_folder_resolves_to_its_highest_integer_version(tmp_path):
    for version in ("1", "2", "10", "latest"):
        os.makedirs(tmp_path / version)
        (tmp_path / version / "saved_model.pb").write_bytes(b"")
    os.makedirs(tmp_path / "11")  # no saved_model.pb: not a version
    assert resolve_saved_model(str(tmp_path)) == str(tmp_path / "10")  # not "2" (text order)
    assert resolve_saved_model(str(tmp_path / "2")) == str(tmp_path / "2")
    with pytest.raises(FileNotFoundError, match="holds no saved_model.pb"):
        resolve_saved_model(str(tmp_path / "11"))


def test_unknown_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.onnx does not exist"):
        load_runner(str(tmp_path / "nothing.onnx"))
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown model kind '.pt'"):
        load_runner(str(tmp_path / "model.pt"))
    for name, label in (("bad.tflite", "TFLite model"), ("bad.onnx", "ONNX model")):
        (tmp_path / name).write_bytes(b"not a model")
        with pytest.raises(DataError, match=f"{name}: not a usable {label}"):
            load_runner(str(tmp_path / name))
    os.makedirs(tmp_path / "export" / "3")
    (tmp_path / "export" / "3" / "saved_model.pb").write_bytes(b"not a graph")
    with pytest.raises(DataError, match="3: not a usable SavedModel"):
        load_runner(str(tmp_path / "export"))
