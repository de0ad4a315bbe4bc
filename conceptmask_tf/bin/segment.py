"""conceptmask-segment: masks of named concepts in image files with an exported model.

Writes into --out_dir, per image and concept, `<image stem>/<concept slug>_mask.png`
(0/255 at the image's upright size) and `..._overlay.png`, and `segments.json` with the
presence score of each concept (layout: `conceptmask_tf.serving.segment`).

Examples:
    conceptmask-segment --model=/tmp/work/export/conceptmask --image=photo.jpg \
        --concept=dog --concept="red car" --out_dir=/tmp/masks
    conceptmask-segment --model=/tmp/work/export/conceptmask.tflite \
        --concepts_dir=/tmp/work/concepts --image=a.png --image=b.jpg --concept=sky \
        --out_dir=/tmp/masks
    conceptmask-segment --model=/tmp/work/export/conceptmask.onnx --image=a.png \
        --word_vectors=vectors.npy --out_dir=/tmp/masks
"""

from __future__ import annotations

import sys

from absl import app, flags

from conceptmask_tf.errors import DataError, UnknownConceptError

PROGRAM = "conceptmask-segment"


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Registers the binary's flags; done in `run`, so importing this module defines none."""
    flags.DEFINE_string("model", None, "The saved ConceptMask (<work_dir>/concept_mask, "
                        "conceptmask-assemble), or an exported model: a SavedModel dir (or "
                        "<export_dir>/conceptmask, the highest version is taken), a .tflite "
                        "or an .onnx file.", flag_values=fv)
    flags.DEFINE_multi_string("image", None, "Image file; repeat for several.", flag_values=fv)
    flags.DEFINE_multi_string("concept", None, "Concept name or phrase; repeat for several.",
                              flag_values=fv)
    flags.DEFINE_string("word_vectors", None, "Instead of --concept: a .npy file of float32 "
                        "[K, D] word vectors, one concept per row.", flag_values=fv)
    flags.DEFINE_string("concepts_dir", None, "Word vectors of the concept names "
                        "(concepts.tsv, word_vectors.npy, e.g. <work_dir>/concepts); needed "
                        "for .tflite and .onnx models, which store no vocabulary.",
                        flag_values=fv)
    flags.DEFINE_string("out_dir", None, "Output folder.", flag_values=fv)
    flags.DEFINE_float("threshold", None, "Mask threshold on mask_probs, in (0, 1] "
                       "(default: the model's masks, threshold 0.5).", flag_values=fv)
    flags.DEFINE_integer("max_image_side", 4096, "Largest accepted image height or width.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("progress", True, "Show a progress bar on stderr.", flag_values=fv)
    flags.mark_flags_as_required(["model", "image", "out_dir"], flag_values=fv)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from conceptmask_tf.serving import segment  # imports TensorFlow

    fv = flags.FLAGS
    try:
        result = segment.segment(fv.model, fv.image, fv.out_dir, concepts=fv.concept,
                                 word_vectors=fv.word_vectors, concepts_dir=fv.concepts_dir,
                                 threshold=fv.threshold, max_image_side=fv.max_image_side,
                                 progress=fv.progress)
    except (DataError, UnknownConceptError, FileNotFoundError, ValueError) as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)
        return 1
    print(segment.summary(result, fv.out_dir))
    return 0


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
