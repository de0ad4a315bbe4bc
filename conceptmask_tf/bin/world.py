"""conceptmask-world: writes a concept world data root (DESIGN.md §3).

Example:
    conceptmask-world --flagfile=flags/world_default.cfg --out_dir=/tmp/world
"""

from __future__ import annotations

import dataclasses
import sys

from absl import app, flags

from conceptmask_tf.data.world import WorldConfig, generate_world
from conceptmask_tf.data.world.config import IMAGE_FORMATS, MASK_FORMATS


def define_flags(fv: flags.FlagValues = flags.FLAGS, with_out_dir: bool = True) -> None:
    """Registers the binary's flags; done in `run`, so importing this module defines none.

    Args:
        fv: Where to register them.
        with_out_dir: Also define the required --out_dir and --overwrite (binaries that
            place the world themselves, like conceptmask-demo, leave them out).
    """
    d = WorldConfig()
    if with_out_dir:
        flags.DEFINE_string("out_dir", None, "Data root to create (must not exist or be empty, "
                        "unless --overwrite replaces a concept world there).", flag_values=fv)
        flags.DEFINE_bool("overwrite", False, "Replace an existing concept world at --out_dir.",
                          flag_values=fv)
    flags.DEFINE_bool("progress", True, "Show a progress bar on stderr.", flag_values=fv)
    flags.DEFINE_integer("seed", d.seed, "Seed of every random choice (levels, phrases, "
                         "scenes, noise); same flags -> byte-identical files.", flag_values=fv)
    flags.DEFINE_integer("num_images", d.num_images, "Training images.", flag_values=fv)
    flags.DEFINE_integer("image_size", d.image_size, "Side of the square images, pixels.",
                         flag_values=fv)
    flags.DEFINE_integer("num_eval_images", d.num_eval_images,
                         "Held-out images (val + test) before coverage top-ups.", flag_values=fv)
    flags.DEFINE_float("val_fraction", d.val_fraction,
                       "Share of held-out images written to val/ (the rest to eval/).",
                       flag_values=fv)
    flags.DEFINE_integer("min_eval_positives", d.min_eval_positives,
                         "Minimum positive images per concept in every eval/ and val/ file.",
                         flag_values=fv)
    flags.DEFINE_enum("image_format", d.image_format, IMAGE_FORMATS, "Image encoding.",
                      flag_values=fv)
    flags.DEFINE_integer("jpeg_quality", d.jpeg_quality, "JPEG quality (1-100).",
                         flag_values=fv)
    flags.DEFINE_float("tag_drop_rate", d.tag_drop_rate,
                       "Probability that a present concept is missing from an image's tags.",
                       flag_values=fv)
    flags.DEFINE_float("wrong_tag_rate", d.wrong_tag_rate,
                       "Probability that an image gets one wrong tag.", flag_values=fv)
    flags.DEFINE_float("coco_fraction", d.coco_fraction,
                       "Share of training images with masks in coco/instances_train.json.",
                       flag_values=fv)
    flags.DEFINE_float("box_fraction", d.box_fraction, "Share of training images with boxes "
                       "(half Open Images CSV, half Visual Genome JSON).", flag_values=fv)
    flags.DEFINE_float("negative_label_rate", d.negative_label_rate,
                       "Share of absent concepts written as verified-absent image labels.",
                       flag_values=fv)
    flags.DEFINE_enum("mask_format", d.mask_format, MASK_FORMATS, "COCO training masks: exact "
                      "polygons where possible (RLE otherwise), or RLE.", flag_values=fv)
    flags.DEFINE_integer("num_phrases", d.num_phrases,
                         "Multi-word concepts drawn from the candidates.", flag_values=fv)
    flags.DEFINE_integer("min_objects", d.min_objects, "Fewest objects per scene.",
                         flag_values=fv)
    flags.DEFINE_integer("max_objects", d.max_objects, "Most objects per scene.",
                         flag_values=fv)
    flags.DEFINE_integer("min_region_pixels", d.min_region_pixels, "Smallest visible area of "
                         "a present concept; 0 = max(4, 0.05% of the image).", flag_values=fv)
    flags.DEFINE_boolean("oracle_boxes", d.oracle_boxes, "Also write every weak_image "
                         "concept's boxes to the Open Images CSV (an all-box world for the "
                         "oracle ladder; not realistic data).", flag_values=fv)
    if with_out_dir:
        flags.mark_flag_as_required("out_dir", flag_values=fv)


def config_from_flags(fv: flags.FlagValues = flags.FLAGS) -> WorldConfig:
    """The WorldConfig named by parsed flags."""
    return WorldConfig(**{f.name: getattr(fv, f.name) for f in dataclasses.fields(WorldConfig)})


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        config = config_from_flags()
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    try:
        summary = generate_world(config, flags.FLAGS.out_dir, overwrite=flags.FLAGS.overwrite,
                                 progress=flags.FLAGS.progress)
    except FileExistsError as e:
        print(f"conceptmask-world: {e}", file=sys.stderr)
        return 1
    print(summary.report())
    return 0


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
