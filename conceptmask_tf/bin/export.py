"""conceptmask-export: the serving SavedModel of a trained work dir (and TFLite / ONNX).

Writes into --export_dir (DESIGN.md §4, §6): <name>/<version>/ (SavedModel, TF Serving
layout, written atomically), models.config (TF Serving), and with --tflite
<name>.tflite and <name>_dynamic_range.tflite, with --onnx <name>.onnx. The model is the
saved, calibrated ConceptMask that conceptmask-assemble writes (<work_dir>/concept_mask);
a models folder is assembled on the fly (calibrated when --data_root has validation files).

Example:
    conceptmask-export --model_dir=/tmp/work/concept_mask --export_dir=/tmp/work/export --tflite
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags

from conceptmask_tf.errors import DataError

PROGRAM = "conceptmask-export"


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Registers the binary's flags; done in `run`, so importing this module defines none."""
    flags.DEFINE_string("model_dir", None, "The saved ConceptMask (<work_dir>/concept_mask, "
                        "conceptmask-assemble), or a models folder (<work_dir>/models) to "
                        "assemble on the fly.", flag_values=fv)
    flags.DEFINE_string("export_dir", None, "Export folder: <name>/<version>/, "
                        "models.config, and the conversions.", flag_values=fv)
    flags.DEFINE_string("concepts_dir", None, "Models folder only: word vectors "
                        "(concepts.tsv, word_vectors.npy). Default: <model_dir>/../concepts.",
                        flag_values=fv)
    flags.DEFINE_string("data_root", None, "Models folder only: the data root whose "
                        "validation files calibrate the model (none: uncalibrated) and "
                        "whose splits.json names the supervised concepts when the "
                        "refinement model's config.json does not.", flag_values=fv)
    flags.DEFINE_string("name", "conceptmask", "Model name (TF Serving MODEL_NAME).",
                        flag_values=fv)
    flags.DEFINE_integer("version", None, "Integer version; default: one more than the "
                         "highest existing one (1 for the first). Never overwritten.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("max_image_side", 4096, "Largest image height or width the "
                         "signatures accept.", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("serving_root", "/models", "Where TF Serving sees --export_dir: "
                        "models.config gets base_path <serving_root>/<name>.", flag_values=fv)
    flags.DEFINE_bool("tflite", False, "Also write <name>.tflite and "
                      "<name>_dynamic_range.tflite.", flag_values=fv)
    flags.DEFINE_bool("onnx", False, "Also write <name>.onnx (opset 17).", flag_values=fv)
    flags.DEFINE_bool("progress", True, "Show a progress bar on stderr.", flag_values=fv)
    flags.mark_flags_as_required(["model_dir", "export_dir"], flag_values=fv)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from conceptmask_tf.serving import exporter  # imports TensorFlow

    fv = flags.FLAGS
    logging.getLogger("conceptmask_tf").setLevel(logging.INFO)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # SavedModel writer chatter
    try:
        result = exporter.export_segmenter(
            fv.model_dir, fv.export_dir, concepts_dir=fv.concepts_dir,
            data_root=fv.data_root, name=fv.name,
            version=fv.version, max_image_side=fv.max_image_side,
            serving_root=fv.serving_root, tflite=fv.tflite, onnx=fv.onnx,
            progress=fv.progress)
    except (DataError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)
        return 1
    print(summary(result))
    return 0


def summary(result: dict) -> str:
    """What was written, one line each."""
    from conceptmask_tf.assembly.segmenter import describe_calibration

    lines = [f"SavedModel (version {result['version']}): {result['saved_model']}",
             f"calibration: {describe_calibration(result['info']['calibration'])}"]
    labels = {"models_config": "TF Serving config", "tflite": "TFLite float32",
              "tflite_dynamic_range": "TFLite dynamic-range", "onnx": "ONNX"}
    lines += [f"{label}: {result[key]}" for key, label in labels.items() if result[key]]
    return "\n".join(lines)


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
