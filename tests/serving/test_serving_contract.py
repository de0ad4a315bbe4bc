"""The TF Serving contract: saved_model_cli listing, REST predict JSON and gRPC protos.

tensorflow_model_server cannot run here (DESIGN.md §8): the requests are built as a client
builds them, their tensors decoded as the server decodes them and fed to the loaded
signature, and the response is built from its outputs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tests.serving.conftest import DIM, random_image

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
# Documented in export/README.md: signature -> inputs / outputs -> (dtype, shape), the
# input shapes as every signature declares them.
IMAGE = ("DT_UINT8", "(-1, -1, 3)")
VECTORS = ("DT_FLOAT", f"(-1, {DIM})")
CONCEPTS = ("DT_STRING", "(-1)")
SEGMENT_OUTPUTS = {"masks": ("DT_UINT8", "(-1, -1, -1)"),
                   "mask_probs": ("DT_FLOAT", "(-1, -1, -1)"),
                   "presence": ("DT_FLOAT", "(-1)")}
DOCUMENTED = {
    "serving_default": ({"image": IMAGE, "word_vectors": VECTORS}, SEGMENT_OUTPUTS),
    "segment_concepts": ({"image": IMAGE, "concepts": CONCEPTS}, SEGMENT_OUTPUTS),
    "concept_vectors": ({"concepts": CONCEPTS}, {"word_vectors": VECTORS}),
}


def _parse_cli(text: str) -> dict:
    """signature -> ({input: (dtype, shape)}, {output: (dtype, shape)}) from `show --all`."""
    parsed = {}
    for block in re.split(r"\n(?=signature_def\[)", text):
        name = re.match(r"signature_def\['(\w+)'\]", block)
        if not name:
            continue
        found = {"inputs": {}, "outputs": {}}
        for kind, tensor, dtype, shape in re.findall(
                r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (.+)", block):
            found[kind][tensor] = (dtype, shape.strip())
        parsed[name.group(1)] = (found["inputs"], found["outputs"])
    return parsed


@pytest.mark.slow
def test_saved_model_cli_lists_the_documented_signatures(tiny_saved_model):
    command = ([SAVED_MODEL_CLI] if os.path.exists(SAVED_MODEL_CLI) else
               [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"])
    shown = subprocess.run([*command, "show", "--dir", tiny_saved_model, "--all"],
                           check=False, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    parsed = _parse_cli(shown.stdout)
    for name, expected in DOCUMENTED.items():
        assert parsed[name] == expected, name
    assert "Method name is: tensorflow/serving/predict" in shown.stdout


def _signature_dtypes(signature) -> dict[str, tf.DType]:
    return {name: spec.dtype for name, spec in signature.structured_input_signature[1].items()}


def _rest_inputs(body_text: str, signature) -> dict[str, tf.Tensor]:
    """What the REST handler does with a columnar body: JSON -> tensors of the signature's
    dtypes (shapes from the nesting)."""
    body = json.loads(body_text)
    dtypes = _signature_dtypes(signature)
    return {name: tf.constant(np.asarray(value, dtype=dtypes[name].as_numpy_dtype)
                              if dtypes[name] != tf.string else value, dtype=dtypes[name])
            for name, value in body["inputs"].items()}


def _direct(signature, **inputs):
    return {k: v.numpy() for k, v in signature(**{n: tf.constant(x) for n, x in
                                                  inputs.items()}).items()}


def test_rest_predict_body_in_columnar_form(tiny_loaded, tiny_model):
    _, embeddings, _ = tiny_model
    image = random_image(13, 17, seed=7)
    vectors = embeddings.vectors_for(["dog", "red car"])
    body = json.dumps({"signature_name": "serving_default",
                       "inputs": {"image": image.tolist(), "word_vectors": vectors.tolist()}})
    signature = tiny_loaded.signatures[json.loads(body)["signature_name"]]
    outputs = signature(**_rest_inputs(body, signature))
    # Columnar request -> columnar response {"outputs": {name: nested lists}}.
    response = json.loads(json.dumps({"outputs": {k: v.numpy().tolist()
                                                  for k, v in outputs.items()}}))
    expected = _direct(signature, image=image, word_vectors=vectors)
    assert set(response["outputs"]) == {"masks", "mask_probs", "presence"}
    for name, value in expected.items():
        np.testing.assert_array_equal(np.asarray(response["outputs"][name], value.dtype), value,
                                      err_msg=name)


def test_rest_body_with_concept_strings(tiny_loaded):
    image = random_image(11, 9, seed=8)
    body = json.dumps({"signature_name": "segment_concepts",
                       "inputs": {"image": image.tolist(), "concepts": ["dog", "Red car"]}})
    signature = tiny_loaded.signatures["segment_concepts"]
    got = signature(**_rest_inputs(body, signature))
    expected = _direct(signature, image=image, concepts=np.asarray(["dog", "Red car"], object))
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name].numpy(), value, err_msg=name)
    assert got["masks"].shape == (2, 11, 9)


def test_grpc_predict_request_and_response_protos(tiny_loaded, tiny_model):
    _, embeddings, _ = tiny_model
    image = random_image(21, 16, seed=9)
    vectors = embeddings.vectors_for(["sky", "t-shirt", "cloud"])
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "conceptmask"
    request.model_spec.signature_name = "serving_default"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(image))
    request.inputs["word_vectors"].CopyFrom(tf.make_tensor_proto(vectors))
    received = predict_pb2.PredictRequest.FromString(request.SerializeToString())

    signature = tiny_loaded.signatures[received.model_spec.signature_name]
    outputs = signature(**{name: tf.constant(tf.make_ndarray(proto))
                           for name, proto in received.inputs.items()})
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(received.model_spec)
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
    answered = predict_pb2.PredictResponse.FromString(response.SerializeToString())

    assert received.inputs["image"].dtype == tf.uint8.as_datatype_enum
    expected = _direct(signature, image=image, word_vectors=vectors)
    assert set(answered.outputs) == set(expected)
    for name, value in expected.items():
        got = tf.make_ndarray(answered.outputs[name])
        assert got.dtype == value.dtype and got.shape == value.shape
        np.testing.assert_array_equal(got, value, err_msg=name)
