"""TFLite and ONNX conversions of the exported SavedModel against the SavedModel itself."""

import os
import warnings

import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.serving.convert import ConversionError, tflite_operators, to_onnx, to_tflite

pytest_plugins = ["tests.serving.convert_fixtures"]

PROB_TOLERANCE = 1e-4
NAMES = {"inputs": ["image", "word_vectors"], "outputs": ["mask_probs", "masks", "presence"]}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _assert_masks_match_probs(masks: np.ndarray, reference: dict[str, np.ndarray]) -> None:
    """Masks equal the reference's except where its probability is within tolerance of 0.5."""
    undecided = np.abs(reference["mask_probs"] - 0.5) <= PROB_TOLERANCE
    np.testing.assert_array_equal(np.where(undecided, 0, masks),
                                  np.where(undecided, 0, reference["masks"]))


def _tflite_runner(path: str):
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=path)
    return interpreter, interpreter.get_signature_runner("serving_default")


@pytest.mark.slow
def test_reference_masks_are_mixed(reference_outputs):
    # The parity checks below are only meaningful when the masks are not all 0 or all 1.
    for outputs in reference_outputs:
        fractions = outputs["masks"].mean(axis=(1, 2))
        assert np.all((fractions > 0.05) & (fractions < 0.95)), fractions


@pytest.mark.slow
def test_tflite_float_matches_saved_model(sharp_tflite, parity_cases, reference_outputs):
    interpreter, runner = _tflite_runner(sharp_tflite)
    assert interpreter.get_signature_list() == {"serving_default": NAMES}
    # One interpreter for all cases: the signature runner resizes H, W and K per call.
    for (image, vectors), reference in zip(parity_cases, reference_outputs):
        outputs = runner(image=image, word_vectors=vectors)
        assert outputs["mask_probs"].shape == outputs["masks"].shape == (
            len(vectors), *image.shape[:2])
        assert outputs["masks"].dtype == np.uint8 and outputs["presence"].shape == (len(vectors),)
        np.testing.assert_allclose(outputs["mask_probs"], reference["mask_probs"],
                                   atol=PROB_TOLERANCE, rtol=0)
        np.testing.assert_allclose(outputs["presence"], reference["presence"],
                                   atol=PROB_TOLERANCE, rtol=0)
        _assert_masks_match_probs(outputs["masks"], reference)


@pytest.mark.slow
def test_tflite_dynamic_range_masks_match_saved_model(sharp_tflite_dynamic_range, sharp_tflite,
                                                      parity_cases, reference_outputs):
    # Quantized for real: int8 weights make the file much smaller than the float one.
    assert os.path.getsize(sharp_tflite_dynamic_range) < 0.5 * os.path.getsize(sharp_tflite)
    _, runner = _tflite_runner(sharp_tflite_dynamic_range)
    for (image, vectors), reference in zip(parity_cases, reference_outputs):
        outputs = runner(image=image, word_vectors=vectors)
        assert _iou(outputs["masks"], reference["masks"]) >= 0.95  # all K masks of the image
        # Each mask a little looser: this random network's smooth maps put more pixels near
        # 0.5 than a trained model's confident masks do.
        for k in range(len(vectors)):
            assert _iou(outputs["masks"][k], reference["masks"][k]) >= 0.9, k
        # Not the float tolerance, but close: a broken layer would move whole maps.
        np.testing.assert_allclose(outputs["mask_probs"], reference["mask_probs"], atol=0.1,
                                   rtol=0)
        np.testing.assert_allclose(outputs["presence"], reference["presence"], atol=0.05,
                                   rtol=0)


@pytest.mark.slow
def test_tflite_models_hold_builtin_operators_only(sharp_tflite, sharp_tflite_dynamic_range):
    for path in (sharp_tflite, sharp_tflite_dynamic_range):
        with open(path, "rb") as f:
            operators = tflite_operators(f.read())
        assert "CONV_2D" in operators and "RESIZE_BILINEAR" in operators  # parsed for real
        assert not [op for op in operators if op.startswith("CUSTOM")], operators


@pytest.mark.slow
def test_onnx_matches_saved_model_with_dynamic_shapes(sharp_onnx, parity_cases,
                                                      reference_outputs):
    import onnx
    import onnxruntime

    model = onnx.load(sharp_onnx)
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    assert [i.name for i in model.graph.input] == NAMES["inputs"]
    assert sorted(o.name for o in model.graph.output) == NAMES["outputs"]
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input}
    assert [isinstance(d, str) for d in dims["image"]] == [True, True, False]  # H, W, 3
    assert dims["word_vectors"][1] == 8 and isinstance(dims["word_vectors"][0], str)  # K, D

    session = onnxruntime.InferenceSession(sharp_onnx, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    for (image, vectors), reference in zip(parity_cases, reference_outputs):
        outputs = dict(zip(names, session.run(names, {"image": image,
                                                      "word_vectors": vectors})))
        assert outputs["mask_probs"].shape == (len(vectors), *image.shape[:2])
        assert outputs["masks"].dtype == np.uint8
        np.testing.assert_allclose(outputs["mask_probs"], reference["mask_probs"],
                                   atol=PROB_TOLERANCE, rtol=0)
        np.testing.assert_allclose(outputs["presence"], reference["presence"],
                                   atol=PROB_TOLERANCE, rtol=0)
        _assert_masks_match_probs(outputs["masks"], reference)


@pytest.mark.slow
def test_conversions_leave_only_their_outputs(sharp_export, sharp_tflite,
                                              sharp_tflite_dynamic_range, sharp_onnx):
    # Atomic writes: no temporary file is left beside the outputs.
    assert sorted(os.listdir(sharp_export["export_dir"])) == [
        "conceptmask", "conceptmask.onnx", "conceptmask.tflite", "conversion_source",
        "dynamic_range.tflite"]


class _NeedsFlex(tf.Module):
    """Bitcast + BitwiseAnd: what keras' ops.argmax adds for -0.0; no TFLite built-in."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        sign = tf.bitwise.bitwise_and(tf.bitcast(x, tf.int32), tf.constant(-2 ** 31))
        return {"negative": tf.cast(sign < 0, tf.float32)}


def _save(module: tf.Module, path: str) -> str:
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


@pytest.mark.slow
def test_ops_without_builtin_fail_clearly_and_write_nothing(tmp_path):
    source = _save(_NeedsFlex(), str(tmp_path / "flex"))
    with pytest.raises(ConversionError, match=r"\(Flex / Select ops\): BitwiseAnd"):
        to_tflite(source, str(tmp_path / "out" / "m.tflite"))
    with pytest.raises(ConversionError, match="cannot map at opset 17: .*BitwiseAnd"):
        to_onnx(source, str(tmp_path / "out" / "m.onnx"))
    assert not os.path.exists(tmp_path / "out")  # nothing written, not even the folder


class _Unranked(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="x")])
    def serve(self, x):
        return {"y": x * 2.0}


def test_unranked_inputs_and_missing_signature_fail_before_converting(tmp_path):
    source = _save(_Unranked(), str(tmp_path / "unranked"))
    for convert in (to_tflite, to_onnx):
        with pytest.raises(ConversionError, match=r"unknown rank \(x\).*checks=False"):
            convert(source, str(tmp_path / "m"))
        with pytest.raises(ConversionError, match="no signature 'nope'.*serving_default"):
            convert(source, str(tmp_path / "m"), signature_key="nope")
        with pytest.raises(FileNotFoundError, match="holds no SavedModel"):
            convert(str(tmp_path), str(tmp_path / "m"))
    assert sorted(os.listdir(tmp_path)) == ["unranked"]
