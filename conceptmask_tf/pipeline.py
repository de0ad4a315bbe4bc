"""The whole method on one data root: concepts -> 3 stages (+ ablations, saliency baseline)
-> the assembled, calibrated ConceptMask -> evaluation on the test split -> export.

`conceptmask-pipeline` (and `conceptmask-demo`, after generating the concept world) call
`run_pipeline`. The work dir follows DESIGN.md §4:

    <work_dir>/concepts/                    concepts.tsv, word_vectors.npy, overlap.npz
    <work_dir>/models/embedding/            stage 1
    <work_dir>/models/refinement/           stage 2
    <work_dir>/models/refinement_no_neg/    stage 2 without the spatial loss (ablation)
    <work_dir>/models/segmentation/         stage 3
    <work_dir>/models/segmentation_single_att/  stage 3 with one attention scale (ablation)
    <work_dir>/models/saliency/             the saliency baseline (concept-blind foreground)
    <work_dir>/concept_mask/                the full model, calibrated on val: config.json,
                                            model.weights.h5, assets/ (assembly.segmenter)
    <work_dir>/report/                      report.json, report.md, pictures/
    <work_dir>/export/conceptmask/<version>/  SavedModel (TF Serving layout), models.config
    <work_dir>/export/conceptmask.tflite    float32, and conceptmask_dynamic_range.tflite
    <work_dir>/export/conceptmask.onnx      opset 17
    <work_dir>/pipeline.json                steps done and their wall times

Each stage's settings come from a typed preset (`presets.PRESETS`: world, world_quality,
paper), plus the step's own settings (no_neg, single_att) and per-stage overrides. A step
whose output exists is skipped, so a rerun resumes (an interrupted stage resumes from its
own step-level backup).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from conceptmask_tf import presets as presets_lib
from conceptmask_tf.base import files
from conceptmask_tf.data.layout import DataRoot

PRESETS = tuple(presets_lib.PRESETS)
CONCEPTS_DIR = "concepts"
MODELS_DIR = "models"
SEGMENTER_DIR = "concept_mask"
REPORT_DIR = "report"
EXPORT_DIR = "export"
EXPORT_NAME = "conceptmask"
STATE_FILE = "pipeline.json"
# (step, stage, the step's own settings) of the training steps, in order.
TRAINING_STEPS: tuple[tuple[str, str, Mapping[str, Any]], ...] = (
    ("embedding", "embedding", {}),
    ("refinement", "refinement", {}),
    ("refinement_no_neg", "refinement", {"no_neg": True}),
    ("segmentation", "segmentation", {}),
    ("segmentation_single_att", "segmentation", {"single_att": True}),
    ("saliency", "saliency", {}),
)
ABLATION_STEPS = ("refinement_no_neg", "segmentation_single_att")
BASELINE_STEPS = ("saliency",)
_CONCEPTS_STAMP = "pipeline_stamp.json"


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What `run_pipeline` does.

    Attributes:
        data_root: The data root (DESIGN.md §3).
        work_dir: Output folder (layout in the module docstring).
        preset: A name of `presets.PRESETS`: "world" (concept world, the 15-minute CPU
            demo), "world_quality" (concept world, longer schedules: about 60 minutes
            on 2 CPU cores) or "paper" (the paper's setup: ResNet-50, 300/700 px).
        dim: Word-vector dimension D (None: the preset's, 32 for the world presets, 512
            for "paper").
        ablations: Also train the no_neg and single_att variants (paper Table 3).
        baselines: Also train the saliency baseline (paper Table 2, §5.4).
        evaluate: Run the evaluation at the end.
        export: Export the assembled model at the very end (SavedModel) and convert it
            to TFLite and ONNX.
        max_eval_images: Evaluate at most this many images per split (None: all).
        calibration_images: Validation images per split for presence / theta calibration.
        stage_overrides: Settings per stage name ("embedding", "refinement",
            "segmentation", "saliency"): field -> value of its config dataclass, applied
            over the preset (e.g. {"refinement": {"epochs": 3}}).
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
    stage_overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        presets_lib.get_preset(self.preset)  # raises on an unknown name
        unknown = set(self.stage_overrides) - set(presets_lib.STAGES)
        if unknown:
            raise ValueError(f"stage_overrides for unknown stages {sorted(unknown)}; expected "
                             f"{sorted(presets_lib.STAGES)}")

    @property
    def preset_settings(self) -> presets_lib.Preset:
        return presets_lib.get_preset(self.preset)

    @property
    def word_dim(self) -> int:
        return self.dim if self.dim is not None else self.preset_settings.word_dim

    @property
    def concepts_dir(self) -> str:
        return os.path.join(self.work_dir, CONCEPTS_DIR)

    @property
    def models_dir(self) -> str:
        return os.path.join(self.work_dir, MODELS_DIR)

    @property
    def segmenter_dir(self) -> str:
        return os.path.join(self.work_dir, SEGMENTER_DIR)

    @property
    def report_dir(self) -> str:
        return os.path.join(self.work_dir, REPORT_DIR)

    @property
    def export_dir(self) -> str:
        return os.path.join(self.work_dir, EXPORT_DIR)

    def model_dir(self, step: str) -> str:
        return os.path.join(self.models_dir, step)

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
                  f"  models             {self.config.models_dir}",
                  f"  full model         {self.config.segmenter_dir}"]
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
    """The training config of one step: the preset's stage config with the run's paths,
    the step's own settings and the stage's overrides (in that order).

    Raises:
        ValueError: An unknown setting or a bad value.
    """
    stage, own = next((s, o) for name, s, o in TRAINING_STEPS if name == step)
    inputs = {}
    if stage == "refinement":
        inputs["embedding_model_dir"] = config.model_dir("embedding")
    if stage == "segmentation":
        inputs["refinement_model_dir"] = config.model_dir("refinement")
    try:
        return config.preset_settings.stage_config(
            stage, data_root=config.data_root, concepts_dir=config.concepts_dir,
            model_dir=config.model_dir(step),
            overrides={**own, **config.stage_overrides.get(stage, {})}, **inputs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{step}: {e}") from e


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
    from conceptmask_tf.models import stage_files

    root = DataRoot(config.data_root)
    root.require(root.tags, "the concept vectors (conceptmask-concepts)")
    files.makedirs(config.work_dir)
    state = _load_state(config.work_dir)
    steps: dict[str, str] = {}
    seconds: dict[str, float] = dict(state.get("seconds", {}))
    planned = ["concepts", *[s for s, _, _ in TRAINING_STEPS if config.plans(s)], "assemble"]
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
        if not config.overwrite and files.exists(stage_files.model_path(model_dir, stage)):
            steps[step] = "reused"
            continue
        stage_cfg = stage_config(config, step)
        timed(step, lambda stage=stage, stage_cfg=stage_cfg: _train(stage, stage_cfg),
              status="trained")
    from conceptmask_tf.assembly.segmenter import is_saved_segmenter

    # New networks or word vectors mean a new model and calibration: assemble again then.
    if (config.overwrite or "trained" in steps.values() or steps["concepts"] != "reused"
            or not is_saved_segmenter(config.segmenter_dir)):
        timed("assemble", lambda: _assemble(config))
    else:
        steps["assemble"] = "reused"
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
        # A new assembled model: export again then.
        if config.overwrite or steps["assemble"] != "reused" or not _exported(config):
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
    files.write_json(os.path.join(config.concepts_dir, _CONCEPTS_STAMP), _concepts_stamp(config))


def _train(stage: str, stage_cfg: Any) -> None:
    from conceptmask_tf.training import embedding, refinement, saliency, segmentation

    train = {"embedding": embedding.train, "refinement": refinement.train,
             "segmentation": segmentation.train, "saliency": saliency.train}[stage]
    train(stage_cfg)


def _assemble(config: PipelineConfig) -> None:
    from conceptmask_tf.assembly.segmenter import ConceptMaskSegmenter

    segmenter = ConceptMaskSegmenter.assemble(config.models_dir, config.concepts_dir,
                                              config.data_root,
                                              calibration_images=config.calibration_images)
    segmenter.save_to_preset(config.segmenter_dir)


def _evaluate(config: PipelineConfig) -> dict[str, Any]:
    from conceptmask_tf.evaluation import evaluator

    return evaluator.evaluate(config.models_dir, config.data_root, config.report_dir,
                              concepts_dir=config.concepts_dir,
                              max_images=config.max_eval_images,
                              segmenter_dir=config.segmenter_dir)


def export_paths(config: PipelineConfig) -> dict[str, str | None]:
    """Where the export step writes: the SavedModel base (and its newest version, or None),
    the two TFLite files and the ONNX file."""
    base = os.path.join(config.export_dir, EXPORT_NAME)
    versions = (sorted(int(v) for v in files.listdir(base) if v.isdigit())
                if files.isdir(base) else [])
    return {"base": base,
            "saved_model": os.path.join(base, str(versions[-1])) if versions else None,
            "tflite": os.path.join(config.export_dir, f"{EXPORT_NAME}.tflite"),
            "tflite_dynamic_range": os.path.join(config.export_dir,
                                                 f"{EXPORT_NAME}_dynamic_range.tflite"),
            "onnx": os.path.join(config.export_dir, f"{EXPORT_NAME}.onnx")}


def _exported(config: PipelineConfig) -> bool:
    return all(path is not None and files.exists(path)
               for path in export_paths(config).values())


def _export(config: PipelineConfig) -> dict[str, Any]:
    from conceptmask_tf.serving.exporter import export_segmenter

    # TensorFlow logs every SavedModel write at INFO (fingerprints, renamed inputs): keep
    # the pipeline's output to its own progress lines.
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(max(level, logging.WARNING))
    try:
        return export_segmenter(config.segmenter_dir, config.export_dir, name=EXPORT_NAME,
                                tflite=True, onnx=True, progress=config.progress)
    finally:
        tf_logger.setLevel(level)


def _concepts_stamp(config: PipelineConfig) -> dict[str, Any]:
    """What the concept vectors were built from: a rerun reuses them only if it matches."""
    tags = DataRoot(config.data_root).tags
    return {"tags": files.abspath(tags), "tags_mtime": files.getmtime(tags),
            "tags_size": files.getsize(tags), "dim": config.word_dim}


def _concepts_match(config: PipelineConfig) -> bool:
    stamp = os.path.join(config.concepts_dir, _CONCEPTS_STAMP)
    if not files.exists(stamp):
        return False
    return files.read_json(stamp) == _concepts_stamp(config)


def _config_record(config: PipelineConfig) -> dict[str, Any]:
    record = dataclasses.asdict(config)
    record["stage_overrides"] = {k: {f: list(v) if isinstance(v, tuple) else v
                                     for f, v in o.items()}
                                 for k, o in config.stage_overrides.items()}
    return record


def _load_state(work_dir: str) -> dict[str, Any]:
    path = os.path.join(work_dir, STATE_FILE)
    if not files.exists(path):
        return {}
    return files.read_json(path)


def _save_state(work_dir: str, state: dict[str, Any]) -> None:
    path = os.path.join(work_dir, STATE_FILE)
    files.write_atomically(path, json.dumps(state, indent=1))
