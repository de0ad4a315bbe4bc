"""The whole method on one data root: concepts -> 3 stages (+ ablations, saliency baseline)
-> evaluation on the test split -> export.

`conceptmask-pipeline` (and `conceptmask-demo`, after generating the concept world) call
`run_pipeline`. The work dir follows DESIGN.md §4:

    <work_dir>/concepts/                    concepts.tsv, word_vectors.npy, overlap.npz
    <work_dir>/models/embedding/            stage 1
    <work_dir>/models/refinement/           stage 2
    <work_dir>/models/refinement_no_neg/    stage 2 without the spatial loss (ablation)
    <work_dir>/models/segmentation/         stage 3
    <work_dir>/models/segmentation_single_att/  stage 3 with one attention scale (ablation)
    <work_dir>/models/saliency/             the saliency baseline (concept-blind foreground)
    <work_dir>/report/                      report.json, report.md, pictures/
    <work_dir>/export/conceptmask/<version>/  SavedModel (TF Serving layout), models.config
    <work_dir>/export/conceptmask.tflite    float32, and conceptmask_dynamic_range.tflite
    <work_dir>/export/conceptmask.onnx      opset 17
    <work_dir>/pipeline.json                steps done and their wall times

Each stage's settings come from a preset flagfile (`flags/<preset>_stage{1,2,3}.cfg`,
`flags/<preset>_saliency.cfg` for the baseline),
parsed exactly as the stage binaries parse it, plus per-stage extra flags. A step whose
output exists is skipped, so a rerun resumes (an interrupted stage resumes from its own
step-level backup).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conceptmask_tf.data.layout import DataRoot

PRESETS = ("world", "world_quality", "paper")
CONCEPTS_DIR = "concepts"
MODELS_DIR = "models"
REPORT_DIR = "report"
EXPORT_DIR = "export"
EXPORT_NAME = "conceptmask"
STATE_FILE = "pipeline.json"
# (step, stage, extra flags) of the training steps, in order.
TRAINING_STEPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("embedding", "embedding", ()),
    ("refinement", "refinement", ()),
    ("refinement_no_neg", "refinement", ("--no_neg",)),
    ("segmentation", "segmentation", ()),
    ("segmentation_single_att", "segmentation", ("--single_att",)),
    ("saliency", "saliency", ()),
)
ABLATION_STEPS = ("refinement_no_neg", "segmentation_single_att")
BASELINE_STEPS = ("saliency",)
_FLAGFILE_NAME = {"embedding": "stage1", "refinement": "stage2", "segmentation": "stage3",
                  "saliency": "saliency"}
_CONCEPTS_STAMP = "pipeline_stamp.json"


def default_flags_dir() -> str:
    """The repository's flags/ folder (next to the package in a source checkout)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flags")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What `run_pipeline` does.

    Attributes:
        data_root: The data root (DESIGN.md §3).
        work_dir: Output folder (layout in the module docstring).
        preset: Flagfile preset: "world" (concept world, the 15-minute CPU demo),
            "world_quality" (concept world, longer schedules: about 60 minutes
            on 2 CPU cores) or "paper" (the paper's setup: ResNet-50, 300/700 px).
        dim: Word-vector dimension D (None: 32 for the world presets, 512 for "paper").
        ablations: Also train the no_neg and single_att variants (paper Table 3).
        baselines: Also train the saliency baseline (paper Table 2, §5.4).
        evaluate: Run the evaluation at the end.
        export: Export the full model at the very end (SavedModel, with the
            evaluation's calibration when there is one) and convert it to TFLite and ONNX.
        max_eval_images: Evaluate at most this many images per split (None: all).
        calibration_images: Validation images per split for presence / theta calibration.
        stage_flags: Extra flags per stage name ("embedding", "refinement",
            "segmentation"), appended after the preset (so they override it).
        flags_dir: Folder of the preset flagfiles.
        overwrite: Redo every step even if its output exists.
        progress: Progress bars.
    """

    data_root: str
    work_dir: str
    preset: str = "world"
    dim: int | None = None
    ablations: bool = True
    baselines: bool = True
    evaluate: bool = True
    export: bool = True
    max_eval_images: int | None = None
    calibration_images: int = 40
    stage_flags: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    flags_dir: str = dataclasses.field(default_factory=default_flags_dir)
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {self.preset!r}")
        unknown = set(self.stage_flags) - set(_FLAGFILE_NAME)
        if unknown:
            raise ValueError(f"stage_flags for unknown stages {sorted(unknown)}; expected "
                             f"{sorted(_FLAGFILE_NAME)}")

    @property
    def word_dim(self) -> int:
        if self.dim is not None:
            return self.dim
        return 512 if self.preset == "paper" else 32

    @property
    def concepts_dir(self) -> str:
        return os.path.join(self.work_dir, CONCEPTS_DIR)

    @property
    def models_dir(self) -> str:
        return os.path.join(self.work_dir, MODELS_DIR)

    @property
    def report_dir(self) -> str:
        return os.path.join(self.work_dir, REPORT_DIR)

    @property
    def export_dir(self) -> str:
        return os.path.join(self.work_dir, EXPORT_DIR)

    def model_dir(self, step: str) -> str:
        return os.path.join(self.models_dir, step)

    def flagfile(self, stage: str) -> str:
        return os.path.join(self.flags_dir, f"{self.preset}_{_FLAGFILE_NAME[stage]}.cfg")

    def plans(self, step: str) -> bool:
        """Whether `step` (a training step) is part of this run."""
        return ((self.ablations or step not in ABLATION_STEPS)
                and (self.baselines or step not in BASELINE_STEPS))


@dataclasses.dataclass
class PipelineResult:
    """What `run_pipeline` did: per step "trained" / "reused" / "skipped", wall times."""

    config: PipelineConfig
    steps: dict[str, str]
    seconds: dict[str, float]
    report: dict[str, Any] | None

    def text(self) -> str:
        lines = ["pipeline steps:"]
        for step, status in self.steps.items():
            seconds = self.seconds.get(step)
            took = f" ({seconds:.0f} s)" if seconds is not None and status != "reused" else ""
            lines.append(f"  {step:<26} {status}{took}")
        lines += ["", "wrote:",
                  f"  concept vectors    {self.config.concepts_dir}",
                  f"  models             {self.config.models_dir}"]
        if self.report is not None:
            lines += [f"  report             {os.path.join(self.config.report_dir, 'report.md')}",
                      f"                     {os.path.join(self.config.report_dir, 'report.json')}",
                      f"  pictures           {os.path.join(self.config.report_dir, 'pictures')}"]
        if self.config.export:
            paths = export_paths(self.config)
            lines += [f"  SavedModel         {paths['saved_model'] or paths['base']}",
                      f"  TFLite             {paths['tflite']}",
                      f"                     {paths['tflite_dynamic_range']}",
                      f"  ONNX               {paths['onnx']}"]
        return "\n".join(lines)


def stage_config(config: PipelineConfig, step: str) -> Any:
    """The training config of one step: preset flagfile + the step's flags + extra flags.

    Raises:
        FileNotFoundError: The preset flagfile does not exist.
        ValueError: A bad flag value.
    """
    from absl import flags

    from conceptmask_tf.training.cli import config_from_flags, define_flags
    from conceptmask_tf.training.config import CONFIG_CLASSES

    stage, step_flags = next((s, f) for name, s, f in TRAINING_STEPS if name == step)
    flagfile = config.flagfile(stage)
    if not os.path.exists(flagfile):
        raise FileNotFoundError(f"preset flagfile {flagfile} does not exist (pass flags_dir "
                                "/ --flags_dir pointing at the repository's flags/ folder)")
    args = [f"--flagfile={flagfile}", f"--data_root={config.data_root}",
            f"--concepts_dir={config.concepts_dir}", f"--model_dir={config.model_dir(step)}"]
    if stage == "refinement":
        args.append(f"--embedding_model_dir={config.model_dir('embedding')}")
    if stage == "segmentation":
        args.append(f"--refinement_model_dir={config.model_dir('refinement')}")
    fv = flags.FlagValues()
    define_flags(CONFIG_CLASSES[stage], fv)
    try:
        fv(["pipeline", *args, *step_flags, *config.stage_flags.get(stage, ())])
    except flags.Error as e:
        raise ValueError(f"{step}: {e}") from e
    return config_from_flags(CONFIG_CLASSES[stage], fv)


def announce_line(line: str) -> None:
    """Prints a progress line at once (stdout may be a buffered file)."""
    print(line, flush=True)


def run_pipeline(config: PipelineConfig,
                 announce: Callable[[str], None] = announce_line) -> PipelineResult:
    """Runs every step not done yet; see the module docstring.

    Args:
        config: What to run.
        announce: Called with a line before each step (progress on stdout by default).

    Returns:
        Step statuses, wall times and the report (None when evaluation is off).

    Raises:
        FileNotFoundError: The data root lacks a file a step needs (the message says which).
        DataError: Malformed input.
        ValueError: Bad settings.
    """
    from conceptmask_tf.training import artifacts

    root = DataRoot(config.data_root)
    root.require(root.tags, "the concept vectors (conceptmask-concepts)")
    os.makedirs(config.work_dir, exist_ok=True)
    state = _load_state(config.work_dir)
    steps: dict[str, str] = {}
    seconds: dict[str, float] = dict(state.get("seconds", {}))
    planned = ["concepts", *[s for s, _, _ in TRAINING_STEPS if config.plans(s)]]
    if config.evaluate:
        planned.append("evaluate")
    if config.export:
        planned.append("export")
    total = len(planned)

    def timed(step: str, work: Callable[[], Any], status: str = "done") -> Any:
        announce(f"[{planned.index(step) + 1}/{total}] {step} ...")
        start = time.perf_counter()
        value = work()
        seconds[step] = round(time.perf_counter() - start, 1)
        steps[step] = status
        _save_state(config.work_dir, {"seconds": seconds, "config": _config_record(config)})
        return value

    if config.overwrite or not _concepts_match(config):
        timed("concepts", lambda: _build_concepts(config))
    else:
        steps["concepts"] = "reused"
    for step, stage, _ in TRAINING_STEPS:
        if step not in planned:
            continue
        model_dir = config.model_dir(step)
        if not config.overwrite and os.path.exists(artifacts.model_path(model_dir, stage)):
            steps[step] = "reused"
            continue
        stage_cfg = stage_config(config, step)
        timed(step, lambda stage=stage, stage_cfg=stage_cfg: _train(stage, stage_cfg),
              status="trained")
    report = None
    if config.evaluate:
        report = timed("evaluate", lambda: _evaluate(config))
        # The report's timing covers evaluation; add the other steps and write it again.
        from conceptmask_tf.evaluation.report import Picture, write_report
        report["timing_s"].update({f"train_{k}": v for k, v in seconds.items()
                                   if k != "evaluate"})
        write_report(report, config.report_dir,
                     [Picture(**entry) for entry in report.get("pictures", ())])
    if config.export:
        # A new evaluation means a new calibration: export again then.
        if config.overwrite or "evaluate" in steps or not _exported(config):
            timed("export", lambda: _export(config))
        else:
            steps["export"] = "reused"
    return PipelineResult(config, steps, seconds, report)


def _build_concepts(config: PipelineConfig) -> None:
    from conceptmask_tf.concepts import build

    root = DataRoot(config.data_root)
    build.build_concepts(root.tags, config.concepts_dir, config.word_dim,
                         data_root=config.data_root, overlap_source="both",
                         progress=config.progress)
    with open(os.path.join(config.concepts_dir, _CONCEPTS_STAMP), "w") as f:
        json.dump(_concepts_stamp(config), f)


def _train(stage: str, stage_cfg: Any) -> None:
    from conceptmask_tf.training import embedding, refinement, saliency, segmentation

    train = {"embedding": embedding.train, "refinement": refinement.train,
             "segmentation": segmentation.train, "saliency": saliency.train}[stage]
    train(stage_cfg)


def _evaluate(config: PipelineConfig) -> dict[str, Any]:
    from conceptmask_tf.evaluation import evaluator

    return evaluator.evaluate(config.models_dir, config.data_root, config.report_dir,
                              concepts_dir=config.concepts_dir,
                              max_images=config.max_eval_images,
                              calibration_images=config.calibration_images)


def export_paths(config: PipelineConfig) -> dict[str, str | None]:
    """Where the export step writes: the SavedModel base (and its newest version, or None),
    the two TFLite files and the ONNX file."""
    base = os.path.join(config.export_dir, EXPORT_NAME)
    versions = (sorted(int(v) for v in os.listdir(base) if v.isdigit())
                if os.path.isdir(base) else [])
    return {"base": base,
            "saved_model": os.path.join(base, str(versions[-1])) if versions else None,
            "tflite": os.path.join(config.export_dir, f"{EXPORT_NAME}.tflite"),
            "tflite_dynamic_range": os.path.join(config.export_dir,
                                                 f"{EXPORT_NAME}_dynamic_range.tflite"),
            "onnx": os.path.join(config.export_dir, f"{EXPORT_NAME}.onnx")}


def _exported(config: PipelineConfig) -> bool:
    return all(path is not None and os.path.exists(path)
               for path in export_paths(config).values())


def _export(config: PipelineConfig) -> dict[str, Any]:
    from conceptmask_tf.serving.exporter import export_models_dir

    # TensorFlow logs every SavedModel write at INFO (fingerprints, renamed inputs): keep
    # the pipeline's output to its own progress lines.
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(max(level, logging.WARNING))
    try:
        return export_models_dir(config.models_dir, config.export_dir,
                                 concepts_dir=config.concepts_dir, data_root=config.data_root,
                                 name=EXPORT_NAME, tflite=True, onnx=True,
                                 progress=config.progress)
    finally:
        tf_logger.setLevel(level)


def _concepts_stamp(config: PipelineConfig) -> dict[str, Any]:
    """What the concept vectors were built from: a rerun reuses them only if it matches."""
    tags = DataRoot(config.data_root).tags
    return {"tags": os.path.abspath(tags), "tags_mtime": os.path.getmtime(tags),
            "tags_size": os.path.getsize(tags), "dim": config.word_dim}


def _concepts_match(config: PipelineConfig) -> bool:
    stamp = os.path.join(config.concepts_dir, _CONCEPTS_STAMP)
    if not os.path.exists(stamp):
        return False
    with open(stamp) as f:
        return json.load(f) == _concepts_stamp(config)


def _config_record(config: PipelineConfig) -> dict[str, Any]:
    record = dataclasses.asdict(config)
    record["stage_flags"] = {k: list(v) for k, v in config.stage_flags.items()}
    return record


def _load_state(work_dir: str) -> dict[str, Any]:
    path = os.path.join(work_dir, STATE_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _save_state(work_dir: str, state: dict[str, Any]) -> None:
    path = os.path.join(work_dir, STATE_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".tmp", path)
