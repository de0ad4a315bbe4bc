"""conceptmask-evaluate: attention, segmentation and presence metrics of a trained work dir.

Writes into --out_dir: report.json (DESIGN.md §5), report.md (the paper's tables next to
its published figures) and pictures/ (overlay examples per kind of concept). --split=test
scores eval/<split>.json (figures to report); --split=val scores val/<split>.json (figures
to choose settings with).

Example:
    conceptmask-evaluate --model_dir=/tmp/work/models --data_root=/tmp/world \
        --out_dir=/tmp/work/report
    conceptmask-evaluate --split=val --model_dir=/tmp/work/models --data_root=/tmp/world \
        --out_dir=/tmp/work/report_val
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags

from conceptmask_tf.errors import DataError

PROGRAM = "conceptmask-evaluate"


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Registers the binary's flags; done in `run`, so importing this module defines none."""
    flags.DEFINE_string("model_dir", None, "The models folder (<work_dir>/models) holding "
                        "embedding/, refinement/, segmentation/ and optionally "
                        "refinement_no_neg/, segmentation_single_att/.", flag_values=fv)
    flags.DEFINE_string("data_root", None, "Data root with eval/<split>.json and/or "
                        "val/<split>.json (calibration always uses val/).", flag_values=fv)
    flags.DEFINE_enum("split", "test", ["test", "val"], "The set scored: test "
                      "(eval/<split>.json, for reported figures) or val (val/<split>.json, "
                      "for choosing settings).", flag_values=fv)
    flags.DEFINE_string("out_dir", None, "Report folder.", flag_values=fv)
    flags.DEFINE_string("concepts_dir", None, "Word vectors (concepts.tsv, word_vectors.npy). "
                        "Default: <model_dir>/../concepts.", flag_values=fv)
    flags.DEFINE_integer("max_images", None, "Evaluate at most this many images per split "
                         "(default: all).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("calibration_images", 40, "Validation images per split used to "
                         "calibrate presence and theta when the full model is assembled "
                         "here (0: no calibration).", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_integer("batch_size", 16, "Images per model call.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("pictures_per_group", 2, "Example pictures per group.", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_integer("image_size", None, "Side the models work at (default: from the "
                         "segmentation model's config.json).", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("progress", True, "Show progress bars on stderr.", flag_values=fv)
    flags.DEFINE_string("concept_mask", None, "The saved full model (conceptmask-assemble). "
                        "Default: <model_dir>/../concept_mask when it exists, else the full "
                        "model is assembled and calibrated here.", flag_values=fv)
    flags.mark_flags_as_required(["model_dir", "data_root", "out_dir"], flag_values=fv)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from conceptmask_tf.evaluation import evaluator  # imports TensorFlow

    fv = flags.FLAGS
    logging.getLogger("conceptmask_tf").setLevel(logging.INFO)
    try:
        report = evaluator.evaluate(
            fv.model_dir, fv.data_root, fv.out_dir, concepts_dir=fv.concepts_dir,
            max_images=fv.max_images, calibration_images=fv.calibration_images,
            batch_size=fv.batch_size, pictures_per_group=fv.pictures_per_group,
            image_size=fv.image_size, progress=fv.progress, split=fv.split,
            segmenter_dir=fv.concept_mask)
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)
        return 1
    print(evaluator.summary(report, fv.out_dir))
    return 0


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
