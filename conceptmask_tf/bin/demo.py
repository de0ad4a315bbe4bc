"""conceptmask-demo: the main job on the built-in concept world.

Generates a concept world under <work_dir>/data, then runs `conceptmask-pipeline` on it:
concept vectors, the three stages and their ablations, evaluation with the paper's tables
(<work_dir>/report/report.md), plus a world preview and nearest concepts in word space. A
rerun reuses finished steps.

Example:
    conceptmask-demo --work_dir=conceptmask_demo
    conceptmask-demo --flagfile=flags/world_alt.cfg --work_dir=/tmp/demo_alt
"""

from __future__ import annotations

import sys

from absl import app, flags

from conceptmask_tf.bin import pipeline as pipeline_bin
from conceptmask_tf.bin import world as world_bin
from conceptmask_tf.demo import run_demo
from conceptmask_tf.errors import DataError


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Registers the demo's flags (the concept-world flags plus its own)."""
    world_bin.define_flags(fv, with_out_dir=False)
    pipeline_bin.define_flags(fv, with_data_root=False)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    fv = flags.FLAGS
    try:
        config = world_bin.config_from_flags(fv)
        options = pipeline_bin.options_from_flags(fv)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    try:
        result = run_demo(fv.work_dir, config, fv.dim or 32, overwrite=fv.overwrite,
                          progress=fv.progress, pipeline_options=options)
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
