"""conceptmask-pipeline: concepts -> 3 stages (+ ablations, baseline) -> evaluation -> export.

The work dir layout is DESIGN.md §4 (see `conceptmask_tf.pipeline`). A rerun skips every
finished step; `--overwrite` redoes them.

Example:
    conceptmask-pipeline --data_root=conceptmask_demo/data --work_dir=/tmp/cm
    conceptmask-pipeline --data_root=R --work_dir=W --preset=paper \\
        --stage_flags=embedding:--backbone_weights=/models/resnet50.h5
"""

from __future__ import annotations

import sys

from absl import app, flags

from conceptmask_tf.errors import DataError
from conceptmask_tf.pipeline import PRESETS, PipelineConfig, run_pipeline


def define_flags(fv: flags.FlagValues = flags.FLAGS, with_data_root: bool = True) -> None:
    """Registers the pipeline's flags (`with_data_root=False` for the demo, which makes it)."""
    if with_data_root:
        flags.DEFINE_string("data_root", None, "Data root (DESIGN.md §3).", flag_values=fv)
        flags.mark_flag_as_required("data_root", flag_values=fv)
    flags.DEFINE_string("work_dir", None if with_data_root else "conceptmask_demo",
                        "Output folder: concepts/, models/, report/.", flag_values=fv)
    if with_data_root:  # the demo always uses the world preset
        flags.DEFINE_enum("preset", "world", PRESETS, "Stage presets "
                          "(conceptmask_tf/presets.py; world: the 15-minute demo; "
                          "world_quality: longer schedules on the concept world; paper: "
                          "ResNet-50 at 300/700 px).", flag_values=fv)
    flags.DEFINE_integer("dim", None, "Word-vector dimension (default: 32 for the world "
                         "presets, 512 for the paper preset).", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("ablations", True, "Train the no_neg and single_att variants too.",
                      flag_values=fv)
    flags.DEFINE_bool("baselines", True, "Train the saliency baseline too (the report's "
                      "saliency row).", flag_values=fv)
    flags.DEFINE_bool("evaluate", True, "Evaluate on the test split (eval/<split>.json) at "
                      "the end.", flag_values=fv)
    flags.DEFINE_bool("export", True, "Export the full model at the end: SavedModel "
                      "(<work_dir>/export/conceptmask/<version>/), TFLite and ONNX.",
                      flag_values=fv)
    flags.DEFINE_integer("max_eval_images", None, "Evaluate at most this many images per "
                         "split (default all).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("calibration_images", 40, "Validation images per split used to "
                         "calibrate presence and theta.", lower_bound=1, flag_values=fv)
    flags.DEFINE_multi_string("stage_flags", [], "STAGE:--flag=value, a flag of the stage's "
                              "binary applied over the preset (STAGE: embedding, "
                              "refinement, segmentation, saliency); repeat for several.",
                              flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Redo every step even if its output exists.",
                      flag_values=fv)
    if with_data_root:  # the demo has the world binary's --progress
        flags.DEFINE_bool("progress", True, "Show progress bars on stderr.", flag_values=fv)
        flags.mark_flag_as_required("work_dir", flag_values=fv)


def parse_stage_flags(values: list[str]) -> dict[str, dict]:
    """["refinement:--epochs=3", ...] -> {"refinement": {"epochs": 3}, ...}: typed
    settings, parsed as the stage's binary parses its flags.

    Raises:
        ValueError: An item without "STAGE:", an unknown stage or flag, or a bad value.
    """
    from conceptmask_tf.training.cli import overrides_from_args
    from conceptmask_tf.training.config import CONFIG_CLASSES

    by_stage: dict[str, list[str]] = {}
    for value in values:
        stage, sep, flag = value.partition(":")
        if not sep or not flag.startswith("--"):
            raise ValueError(f"--stage_flags={value!r}: expected STAGE:--flag=value")
        by_stage.setdefault(stage.strip(), []).append(flag)
    parsed = {}
    for stage, args in by_stage.items():
        if stage not in CONFIG_CLASSES:
            raise ValueError(f"--stage_flags: unknown stage {stage!r}; expected one of "
                             f"{sorted(CONFIG_CLASSES)}")
        try:
            parsed[stage] = overrides_from_args(CONFIG_CLASSES[stage], args)
        except ValueError as e:
            raise ValueError(f"--stage_flags {stage}: {e}") from None
    return parsed


def options_from_flags(fv: flags.FlagValues) -> dict:
    """The `PipelineConfig` fields the demo and the pipeline share, from parsed flags."""
    return {"ablations": fv.ablations, "baselines": fv.baselines, "evaluate": fv.evaluate,
            "export": fv.export,
            "max_eval_images": fv.max_eval_images,
            "calibration_images": fv.calibration_images,
            "stage_overrides": parse_stage_flags(fv.stage_flags)}


def config_from_flags(fv: flags.FlagValues) -> PipelineConfig:
    """The pipeline config named by parsed flags (raises ValueError on bad values)."""
    return PipelineConfig(data_root=fv.data_root, work_dir=fv.work_dir, preset=fv.preset,
                          dim=fv.dim, overwrite=fv.overwrite, progress=fv.progress,
                          **options_from_flags(fv))


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    fv = flags.FLAGS
    try:
        config = config_from_flags(fv)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    try:
        result = run_pipeline(config)
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"conceptmask-pipeline: {e}", file=sys.stderr)
        return 1
    print(result.text())
    return 0


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
