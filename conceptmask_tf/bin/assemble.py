"""conceptmask-assemble: the stage networks -> one saved, calibrated ConceptMask.

Composes <model_dir> (embedding/, refinement/, segmentation/) into the full model,
calibrates its presence threshold and slope and the weak-concept theta on the data root's
val/<split>.json files, and saves it as one folder (config.json, model.weights.h5,
metadata.json, assets/: word vectors, supervised concepts, calibration) that
conceptmask-evaluate, conceptmask-export, conceptmask-segment and
`ConceptMaskSegmenter.from_preset` load.

Example:
    conceptmask-assemble --model_dir=/tmp/work/models --data_root=/tmp/world \
        --out_dir=/tmp/work/concept_mask
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags

from conceptmask_tf.errors import DataError

PROGRAM = "conceptmask-assemble"


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Registers the binary's flags; done in `run`, so importing this module defines none."""
    flags.DEFINE_string("model_dir", None, "The models folder (<work_dir>/models) holding "
                        "embedding/, refinement/ and segmentation/.", flag_values=fv)
    flags.DEFINE_string("data_root", None, "Data root: its val/<split>.json files calibrate "
                        "the model; its splits.json names the supervised concepts when the "
                        "refinement model's config.json does not.", flag_values=fv)
    flags.DEFINE_string("out_dir", None, "The saved model's folder. Default: "
                        "<model_dir>/../concept_mask.", flag_values=fv)
    flags.DEFINE_string("concepts_dir", None, "Word vectors (concepts.tsv, word_vectors.npy). "
                        "Default: <model_dir>/../concepts.", flag_values=fv)
    flags.DEFINE_integer("calibration_images", 40, "Validation images per split used to "
                         "calibrate presence and theta (0: no calibration).", lower_bound=0,
                         flag_values=fv)
    flags.mark_flags_as_required(["model_dir", "data_root"], flag_values=fv)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from conceptmask_tf.assembly import segmenter as segmenter_lib  # imports TensorFlow

    fv = flags.FLAGS
    logging.getLogger("conceptmask_tf").setLevel(logging.INFO)
    out_dir = fv.out_dir or segmenter_lib.default_segmenter_dir(fv.model_dir)
    try:
        segmenter = segmenter_lib.ConceptMaskSegmenter.assemble(
            fv.model_dir, fv.concepts_dir, fv.data_root,
            calibration_images=fv.calibration_images)
        segmenter.save_to_preset(out_dir)
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)
        return 1
    print(summary(segmenter.info(), out_dir))
    return 0


def summary(info: dict, out_dir: str) -> str:
    """What was written and the calibration, one line each."""
    from conceptmask_tf.assembly.segmenter import describe_calibration

    return "\n".join([
        f"saved ConceptMask: {out_dir}",
        (f"image size {info['image_size']}, attention scales {info['attention_scales']}, "
         f"weak attention {info['weak_attention']}"),
        (f"supervised concepts: {len(info['supervised_concepts'])} "
         f"({info['supervised_source']})"),
        f"calibration: {describe_calibration(info['calibration'])}"])


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
