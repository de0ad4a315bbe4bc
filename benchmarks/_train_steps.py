"""What the train-step benchmarks share: a stage config from a preset flagfile, and timing.

Used by `stage2_step.py` and `stage3_step.py`: each builds trainers its own way, then times
them here on one repeated batch, in turn, so that the machine's drift hits all alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def step_arguments(parser: argparse.ArgumentParser, flagfile: str) -> None:
    """Adds the arguments every step benchmark takes: the data, the preset and the timing.

    Args:
        parser: The benchmark's parser; it adds its stage's model dir and variants itself.
        flagfile: The default preset flagfile, a name in the repository's flags/.
    """
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--concepts_dir", required=True)
    parser.add_argument("--flagfile", default=os.path.join(repo, "flags", flagfile))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="train steps per repetition")
    parser.add_argument("--json", default=None, help="write the results here")


def preset_config(config_class: type, flagfile: str, flags: Sequence[str]) -> Any:
    """The stage config a training binary builds from `--flagfile` plus `flags`.

    File checks are off and one step per epoch is set: the benchmarks time steps, they do
    not train.
    """
    from absl import flags as absl_flags

    from conceptmask_tf.training.cli import config_from_flags, define_flags

    values = absl_flags.FlagValues()
    define_flags(config_class, values)
    values(["benchmark", f"--flagfile={flagfile}", "--model_dir=unused",
            *flags])
    return dataclasses.replace(config_from_flags(config_class, values), steps=1)


def median_step_ms(runs: Mapping[str, Callable[[], Any]], repeats: int, steps: int,
                   warmup: int = 3) -> dict[str, float]:
    """Median milliseconds per call of each run.

    Each run is called `warmup` times first (tracing); then, `repeats` times, each run in
    turn is called `steps` times and timed.
    """
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(steps):
                run()
            times[name].append((time.perf_counter() - start) / steps * 1000)
    return {name: statistics.median(values) for name, values in times.items()}
