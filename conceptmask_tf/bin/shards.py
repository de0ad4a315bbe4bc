"""conceptmask-shards: a stage's training examples -> sharded TFRecord files, for large data.

Reads the data root's annotations as the stage's training does (concept resolution,
zero-shot exclusion, box and mask checks) and writes each example with its image file's
bytes. Training with --shards=<output_dir> then reads only the shards' index before the
first step, and splits the files between workers. Resumable: a rerun with the same
arguments writes only the files still missing. The stage's own flags (a flagfile) pick
the examples, as in training; its model dirs are not used.

Example:
    conceptmask-shards refinement --flagfile=flags/paper_stage2.cfg \
        --data_root=gs://bucket/oivg --concepts_dir=gs://bucket/work/concepts \
        --output_dir=gs://bucket/shards/refinement --num_shards=256
    conceptmask-train-refinement --flagfile=flags/paper_stage2.cfg \
        --shards=gs://bucket/shards/refinement ...
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags

from conceptmask_tf.errors import DataError
from conceptmask_tf.training import cli
from conceptmask_tf.training.config import CONFIG_CLASSES

PROGRAM = "conceptmask-shards"
STAGES = ("embedding", "refinement", "segmentation")
USAGE = (f"usage: {PROGRAM} {{{','.join(STAGES)}}} --data_root=... --concepts_dir=... "
         "--output_dir=... [--num_shards=N] [the stage's training flags]")
# Model dirs a stage config requires but the writer does not use.
_UNUSED_DIRS = ("model_dir", "embedding_model_dir", "refinement_model_dir")


def define_flags(stage: str, fv: flags.FlagValues = flags.FLAGS) -> None:
    """The stage config's flags (as its training binary has them) and the writer's."""
    cli.define_flags(CONFIG_CLASSES[stage], fv, required_fields=False)
    flags.DEFINE_string("output_dir", None, "The shard folder (any TensorFlow filesystem).",
                        flag_values=fv)
    flags.DEFINE_integer("num_shards", 64, "Files to write: several per training worker "
                         "(files are split between workers), each ideally 100-200 MB.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("num_threads", 8, "Files written at once.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("shuffle_seed", 0, "Seed of the permutation of the examples "
                         "before they are split (each file a random sample).", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Replace a folder holding other shards.",
                      flag_values=fv)
    flags.mark_flags_as_required(["output_dir", "data_root", "concepts_dir"], flag_values=fv)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in STAGES:
        raise app.UsageError(USAGE)
    from conceptmask_tf.training import shard_writer  # imports TensorFlow

    fv = flags.FLAGS
    logging.getLogger("conceptmask_tf").setLevel(logging.INFO)
    config_cls = CONFIG_CLASSES[argv[1]]
    values = cli.config_values(config_cls, fv)
    for name in _UNUSED_DIRS:
        if name in values and not values[name]:
            values[name] = fv.output_dir
    try:
        config = config_cls(**values)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    try:
        written = shard_writer.write_stage_shards(
            config, fv.output_dir, num_shards=fv.num_shards,
            num_threads=fv.num_threads, shuffle_seed=fv.shuffle_seed, overwrite=fv.overwrite)
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)
        return 1
    print(written.summary())
    return 0


def run() -> None:
    stage = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if stage not in STAGES:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    define_flags(stage)
    app.run(main)


if __name__ == "__main__":
    run()
