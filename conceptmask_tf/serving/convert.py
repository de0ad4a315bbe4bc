"""Converts an exported SavedModel signature to TFLite (built-in ops only) and to ONNX.

Both converters read the SavedModel, not the Keras model: the converted files compute what
TF Serving computes, and the SavedModel's names (`image`, `word_vectors` -> `masks`,
`mask_probs`, `presence`) carry over. Convert a SavedModel whose signature has static
ranks and no input asserts (the exporter's check-free variant): converters need static
ranks, and the runners of `conceptmask_tf.serving.runtimes` check inputs on the host.

- TFLite: `TFLiteConverter.from_saved_model` restricted to `TFLITE_BUILTINS`; a graph that
  would need TensorFlow (Flex / Select) ops fails with a `ConversionError` naming them, and
  the written model is checked to hold built-in operators only. `quantize=True` gives
  dynamic-range quantization (int8 weights, float activations, no representative data).
- ONNX: the `tf2onnx.convert` command line (tf2onnx has no in-process SavedModel entry
  point), checked with `onnx.checker`; H, W and K stay dynamic.

Outputs are written through `conceptmask_tf.base.files`, so `out_path` may be on any
TensorFlow filesystem (gs://, ...), and atomically: to a hidden file beside the target,
then renamed over it. The converters' own scratch files (tf2onnx's output) stay in a local
temporary folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

import tensorflow as tf

from conceptmask_tf.base import files

DEFAULT_SIGNATURE = "serving_default"
DEFAULT_OPSET = 17
_LOG_TAIL = 3000  # characters of a failed converter's log shown in the error


class ConversionError(RuntimeError):
    """A SavedModel signature cannot be converted to the requested format."""


def to_tflite(saved_model_dir: str, out_path: str, quantize: bool = False,
              signature_key: str = DEFAULT_SIGNATURE) -> str:
    """Converts one SavedModel signature to a TFLite flatbuffer of built-in ops.

    Args:
        saved_model_dir: The SavedModel (e.g. `<export_dir>/conceptmask/<version>`).
        out_path: The `.tflite` file to write (any TensorFlow filesystem).
        quantize: Dynamic-range quantization (`Optimize.DEFAULT`, no representative data).
        signature_key: The signature to convert; it keeps its name in the TFLite model
            (run it with `interpreter.get_signature_runner(signature_key)`).

    Returns:
        `out_path`.

    Raises:
        FileNotFoundError: `saved_model_dir` holds no SavedModel.
        ConversionError: The signature does not exist, or needs ops outside the TFLite
            built-ins (the message names them).
    """
    _require_saved_model(saved_model_dir)
    _require_signature(saved_model_dir, signature_key)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=[signature_key])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        content = converter.convert()
    except Exception as e:  # ConverterError, not exported under a stable public name
        select_ops = _select_ops(str(e))
        if select_ops:
            raise ConversionError(
                f"{saved_model_dir} signature {signature_key!r} needs TensorFlow ops that "
                f"TFLite built-ins lack (Flex / Select ops): {', '.join(select_ops)}. "
                "Rewrite the graph with built-in-convertible ops (see DESIGN.md §8); "
                "Flex ops are not allowed in the exported model") from e
        raise ConversionError(f"TFLite conversion of {saved_model_dir} signature "
                              f"{signature_key!r} failed: {str(e)[-_LOG_TAIL:]}") from e
    custom = [op for op in tflite_operators(content) if op.startswith("CUSTOM")]
    if custom:
        raise ConversionError(f"the TFLite model of {saved_model_dir} holds non-built-in "
                              f"operators: {', '.join(sorted(set(custom)))}")
    _write_atomically(out_path, content)
    return out_path


def tflite_operators(model_content: bytes) -> list[str]:
    """Names of the operator codes of a TFLite flatbuffer, e.g. ["CONV_2D", "CUSTOM:FlexX"].

    Built-in operators give their `BuiltinOperator` name; custom ones (Flex ops included)
    "CUSTOM:<custom code>".
    """
    # The flatbuffer schema bindings TF ships; no public API lists a model's operators.
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python import schema_util

    names = {code: name for name, code in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    model = schema.Model.GetRootAsModel(model_content, 0)
    operators = []
    for i in range(model.OperatorCodesLength()):
        operator_code = model.OperatorCodes(i)
        code = schema_util.get_builtin_code_from_operator_code(operator_code)
        if code == schema.BuiltinOperator.CUSTOM:
            custom = operator_code.CustomCode()
            operators.append(f"CUSTOM:{custom.decode() if custom else ''}")
        else:
            operators.append(names.get(code, f"BUILTIN_{code}"))
    return operators


def to_onnx(saved_model_dir: str, out_path: str, opset: int = DEFAULT_OPSET,
            signature_key: str = DEFAULT_SIGNATURE) -> str:
    """Converts one SavedModel signature to ONNX with tf2onnx.

    Input and output names are the signature's; dimensions unknown in the signature (H,
    W, K) stay dynamic.

    Args:
        saved_model_dir: The SavedModel.
        out_path: The `.onnx` file to write (any TensorFlow filesystem).
        opset: ONNX opset of the default domain.
        signature_key: The signature to convert.

    Returns:
        `out_path`.

    Raises:
        FileNotFoundError: `saved_model_dir` holds no SavedModel.
        ConversionError: The signature does not exist, tf2onnx failed or left ops it
            cannot map (named in the message), or the result is not a valid ONNX model.
    """
    import onnx  # optional dependencies, needed for ONNX only

    _require_saved_model(saved_model_dir)
    _require_signature(saved_model_dir, signature_key)
    # tf2onnx writes a local file only: it converts into a local scratch folder, and the
    # checked result is then written to `out_path` through base.files.
    with tempfile.TemporaryDirectory(prefix="conceptmask-onnx-") as scratch:
        tmp_path = os.path.join(scratch, "model.onnx")
        command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved_model_dir,
                   "--signature_def", signature_key, "--opset", str(opset),
                   "--output", tmp_path]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        log = done.stdout + done.stderr
        unsupported = re.search(r"Unsupported ops: (.*)", log)
        if done.returncode != 0 or unsupported:
            detail = (f"ops tf2onnx cannot map at opset {opset}: "
                      f"{', '.join(_quoted_names(unsupported.group(1)))}"
                      if unsupported else f"exit code {done.returncode}: {_error_lines(log)}")
            raise ConversionError(f"ONNX conversion of {saved_model_dir} signature "
                                  f"{signature_key!r} failed: {detail}")
        with files.open_file(tmp_path, "rb") as f:
            content = f.read()
    try:
        onnx.checker.check_model(onnx.load_model_from_string(content), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ConversionError(f"tf2onnx wrote an invalid ONNX model for "
                              f"{saved_model_dir}: {e}") from e
    _write_atomically(out_path, content)
    return out_path


def _require_saved_model(saved_model_dir: str) -> None:
    if not tf.saved_model.contains_saved_model(saved_model_dir):
        raise FileNotFoundError(f"{saved_model_dir} holds no SavedModel (saved_model.pb): "
                                "conceptmask-export writes <export_dir>/conceptmask/<version>")


def _require_signature(saved_model_dir: str, signature_key: str) -> None:
    """Raises ConversionError unless the signature exists with inputs of known rank."""
    from tensorflow.python.tools import saved_model_utils  # reads the .pb, builds no graph

    meta_graph = saved_model_utils.get_meta_graph_def(saved_model_dir, "serve")
    if signature_key not in meta_graph.signature_def:
        names = sorted(k for k in meta_graph.signature_def if not k.startswith("__"))
        raise ConversionError(f"{saved_model_dir} has no signature {signature_key!r}; it has "
                              f"{names}")
    inputs = meta_graph.signature_def[signature_key].inputs
    unranked = sorted(name for name, info in inputs.items() if info.tensor_shape.unknown_rank)
    if unranked:
        raise ConversionError(
            f"{saved_model_dir} signature {signature_key!r} declares inputs of unknown rank "
            f"({', '.join(unranked)}): converters need static ranks. Convert the check-free "
            "SavedModel (signatures.build_archive(..., checks=False))")


def _select_ops(message: str) -> list[str]:
    """The TF ops a TFLite ConverterError reports as Flex / Select or unsupported."""
    found = re.findall(r"TF Select ops: ([^\n]+)", message)
    names = [name.strip() for line in found for name in line.split(",")]
    names += re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message)
    return sorted({n for n in names if n})


def _error_lines(log: str) -> str:
    """The exception lines of a Python traceback log (the root cause first)."""
    lines = [line.strip() for line in log.splitlines()
             if re.match(r"^\s*[\w.]+(Error|Exception): ", line)]
    return " | ".join(dict.fromkeys(lines)) or log[-_LOG_TAIL:]


def _quoted_names(text: str) -> list[str]:
    """Names in quotes, e.g. from tf2onnx's "Counter({'Bitcast': 1, 'BitwiseAnd': 1})"."""
    return re.findall(r"['\"](\w+)['\"]", text)


def _write_atomically(path: str, content: bytes) -> None:
    """Writes `content` to `path` on any filesystem, creating its folder."""
    files.makedirs(os.path.dirname(files.abspath(path)))
    files.write_atomically(path, content)
