"""conceptmask-demo: the main job on the built-in concept world.

Generates a concept world, learns its concept vectors (with the overlap matrix from its masks
and boxes), and reports what it wrote: the data root, the vectors, nearest concepts in word
space, and a preview picture. A rerun reuses finished steps.

Example:
    conceptmask-demo --work_dir=conceptmask_demo
    conceptmask-demo --flagfile=flags/world_alt.cfg --work_dir=/tmp/demo_alt
"""

from __future__ import annotations

import sys

from absl import app, flags

from conceptmask_tf.bin import world as world_bin
from conceptmask_tf.demo import run_demo
from conceptmask_tf.errors import DataError


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Registers the demo's flags (the concept-world flags plus its own)."""
    world_bin.define_flags(fv, with_out_dir=False)
    flags.DEFINE_string("work_dir", "conceptmask_demo", "Output folder: data/ (the concept "
                        "world), concepts/, report/.", flag_values=fv)
    flags.DEFINE_integer("dim", 32, "Word-vector dimension D.", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Redo every step even if its output exists.",
                      flag_values=fv)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    fv = flags.FLAGS
    try:
        config = world_bin.config_from_flags(fv)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    try:
        result = run_demo(fv.work_dir, config, fv.dim, overwrite=fv.overwrite,
                          progress=fv.progress)
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"conceptmask-demo: {e}", file=sys.stderr)
        return 1
    print(result.text)
    return 0


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
