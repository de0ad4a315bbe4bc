"""The pipeline's step plan, presets and resume logic (training itself is faked here; the
stages are tested in tests/training and end to end in tests/test_world_end_to_end.py)."""

import dataclasses
import json
import os

import pytest
from absl import flags

from conceptmask_tf import pipeline
from conceptmask_tf.bin import demo as demo_bin
from conceptmask_tf.bin import pipeline as pipeline_bin
from conceptmask_tf.bin.pipeline import parse_stage_flags
from conceptmask_tf.models import stage_files
from conceptmask_tf.pipeline import PipelineConfig, run_pipeline, stage_config


def _data_root(tmp_path) -> str:
    root = tmp_path / "data"
    root.mkdir()
    (root / "tags.jsonl").write_text('{"image": "images/a.jpg", "tags": ["cat"]}\n')
    return str(root)


def _fake_steps(monkeypatch) -> list[str]:
    """Replaces concept building and training with recorders that write the outputs."""
    calls: list[str] = []

    def build(config):
        calls.append("concepts")
        os.makedirs(config.concepts_dir, exist_ok=True)
        with open(os.path.join(config.concepts_dir, pipeline._CONCEPTS_STAMP), "w") as f:
            json.dump(pipeline._concepts_stamp(config), f)

    def train(stage, stage_cfg):
        calls.append(os.path.basename(stage_cfg.model_dir))
        os.makedirs(stage_cfg.model_dir, exist_ok=True)
        open(stage_files.model_path(stage_cfg.model_dir, stage), "w").close()

    def assemble(config):
        calls.append("assemble")
        os.makedirs(config.segmenter_dir, exist_ok=True)
        for name in ("config.json", "model.weights.h5"):
            open(os.path.join(config.segmenter_dir, name), "w").close()

    monkeypatch.setattr(pipeline, "_build_concepts", build)
    monkeypatch.setattr(pipeline, "_train", train)
    monkeypatch.setattr(pipeline, "_assemble", assemble)
    return calls


def test_stage_configs_come_from_the_preset_with_variant_settings(tmp_path):
    config = PipelineConfig(data_root="/d", work_dir=str(tmp_path),
                            stage_overrides={"refinement": {"epochs": 1}})
    embedding = stage_config(config, "embedding")
    assert embedding.model_dir == os.path.join(str(tmp_path), "models", "embedding")
    assert embedding.concepts_dir == os.path.join(str(tmp_path), "concepts")
    assert embedding.backbone == "local_convnet"  # presets.WORLD
    full = stage_config(config, "refinement")
    no_neg = stage_config(config, "refinement_no_neg")
    assert (full.no_neg, no_neg.no_neg) == (False, True)
    assert full.epochs == no_neg.epochs == 1  # the override beats the preset
    assert full.embedding_model_dir == config.model_dir("embedding")
    single = stage_config(config, "segmentation_single_att")
    assert single.single_att and not stage_config(config, "segmentation").single_att
    assert single.refinement_model_dir == config.model_dir("refinement")
    assert single.model_dir == config.model_dir("segmentation_single_att")
    saliency = stage_config(config, "saliency")
    assert saliency.model_dir == config.model_dir("saliency")
    assert saliency.encoder_widths == stage_config(config, "segmentation").encoder_widths


def test_world_quality_preset_is_the_world_preset_with_longer_schedules(tmp_path):
    world = PipelineConfig(data_root="/d", work_dir=str(tmp_path))
    quality = PipelineConfig(data_root="/d", work_dir=str(tmp_path), preset="world_quality")
    assert quality.word_dim == world.word_dim == 32
    epochs = {}
    for step in ("embedding", "refinement", "segmentation", "saliency"):
        fast, slow = stage_config(world, step), stage_config(quality, step)
        epochs[step] = (fast.epochs, slow.epochs)
        # Only the epochs (and how much of stage 2's backbone is fine-tuned, whether
        # stage 3 caches its attention, and where the weak concepts' own map comes from)
        # differ: every other setting was chosen for the world preset.
        same = {"epochs": fast.epochs}
        if step == "refinement":
            same["finetune_from"] = fast.finetune_from
        if step == "segmentation":
            same["cache_attention"] = fast.cache_attention
            same["weak_attention"] = fast.weak_attention
        assert dataclasses.replace(slow, **same) == fast, step
    assert epochs["refinement"] == (12, 60) and epochs["segmentation"] == (6, 16)
    # world: the backbone frozen below conv4; world_quality: all of it fine-tuned.
    assert (stage_config(world, "refinement").finetune_from,
            stage_config(quality, "refinement").finetune_from) == ("conv4", "")
    # world: stage 3 on cached attention; world_quality: computed on the fly.
    assert (stage_config(world, "segmentation").cache_attention,
            stage_config(quality, "segmentation").cache_attention) == (True, False)
    assert epochs["embedding"] == (8, 32)
    # world: the paper's weak-concept rule; world_quality: the own map from stage 1.
    assert (stage_config(world, "segmentation").weak_attention,
            stage_config(quality, "segmentation").weak_attention) == ("refined", "original")
    assert stage_config(quality, "segmentation").lr_schedule == "cosine"


def test_paper_preset_uses_resnet50_and_512_dims(tmp_path):
    config = PipelineConfig(data_root="/d", work_dir=str(tmp_path), preset="paper")
    assert config.word_dim == 512
    assert stage_config(config, "embedding").backbone == "resnet50"


def test_runs_every_step_in_order_then_reuses_them(tmp_path, monkeypatch):
    calls = _fake_steps(monkeypatch)
    config = PipelineConfig(data_root=_data_root(tmp_path), work_dir=str(tmp_path / "w"),
                            evaluate=False, export=False, progress=False)
    lines: list[str] = []
    first = run_pipeline(config, announce=lines.append)
    assert calls == ["concepts", "embedding", "refinement", "refinement_no_neg",
                     "segmentation", "segmentation_single_att", "saliency", "assemble"]
    assert lines[0] == "[1/8] concepts ..." and lines[-1] == "[8/8] assemble ..."
    assert set(first.steps.values()) == {"done", "trained"}
    with open(tmp_path / "w" / pipeline.STATE_FILE) as f:
        state = json.load(f)
    assert set(state["seconds"]) == set(first.steps)

    calls.clear()
    second = run_pipeline(config, announce=lines.append)
    assert calls == []
    assert set(second.steps.values()) == {"reused"}


def test_a_missing_stage_is_retrained_alone_and_ablations_can_be_skipped(tmp_path, monkeypatch):
    calls = _fake_steps(monkeypatch)
    config = PipelineConfig(data_root=_data_root(tmp_path), work_dir=str(tmp_path / "w"),
                            evaluate=False, export=False, ablations=False,
                            progress=False)
    run_pipeline(config, announce=lambda _: None)
    assert calls == ["concepts", "embedding", "refinement", "segmentation", "saliency",
                     "assemble"]
    calls.clear()
    no_baseline = PipelineConfig(data_root=config.data_root, work_dir=str(tmp_path / "w2"),
                                 evaluate=False, export=False, baselines=False, progress=False)
    run_pipeline(no_baseline, announce=lambda _: None)
    assert "saliency" not in calls and "segmentation_single_att" in calls
    calls.clear()
    os.remove(stage_files.model_path(config.model_dir("refinement"), "refinement"))
    run_pipeline(config, announce=lambda _: None)
    assert calls == ["refinement", "assemble"]  # a new network: assembled again


def test_changed_tags_rebuild_the_concept_vectors(tmp_path, monkeypatch):
    calls = _fake_steps(monkeypatch)
    root = _data_root(tmp_path)
    config = PipelineConfig(data_root=root, work_dir=str(tmp_path / "w"), evaluate=False,
                            export=False, ablations=False, progress=False)
    run_pipeline(config, announce=lambda _: None)
    with open(os.path.join(root, "tags.jsonl"), "a") as f:
        f.write('{"image": "images/b.jpg", "tags": ["dog"]}\n')
    calls.clear()
    run_pipeline(config, announce=lambda _: None)
    assert calls == ["concepts", "assemble"]


def test_bad_settings_and_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="preset must be one of"):
        PipelineConfig(data_root="/d", work_dir="/w", preset="tiny")
    with pytest.raises(ValueError, match="unknown stages"):
        PipelineConfig(data_root="/d", work_dir="/w", stage_overrides={"stage4": {"x": 1}})
    with pytest.raises(FileNotFoundError, match="tags.jsonl"):
        run_pipeline(PipelineConfig(data_root=str(tmp_path), work_dir=str(tmp_path / "w")),
                     announce=lambda _: None)
    config = PipelineConfig(data_root="/d", work_dir="/w",
                            stage_overrides={"embedding": {"epochs": 0}})
    with pytest.raises(ValueError, match="embedding: .*epochs must be >= 1, got 0"):
        stage_config(config, "embedding")
    config = PipelineConfig(data_root="/d", work_dir="/w",
                            stage_overrides={"embedding": {"epoch": 3}})
    with pytest.raises(ValueError, match="embedding: .*unknown setting epoch"):
        stage_config(config, "embedding")


def test_stage_flags_parse_into_typed_settings_and_refuse_malformed_items():
    assert parse_stage_flags(["refinement:--epochs=3", "refinement:--no_neg",
                              "embedding:--hidden_dims=8,8"]) == {
        "refinement": {"epochs": 3, "no_neg": True}, "embedding": {"hidden_dims": (8, 8)}}
    for bad in ("--epochs=3", "refinement:epochs=3"):
        with pytest.raises(ValueError, match="STAGE:--flag=value"):
            parse_stage_flags([bad])
    with pytest.raises(ValueError, match="unknown stage 'stage4'"):
        parse_stage_flags(["stage4:--epochs=3"])
    with pytest.raises(ValueError, match="--stage_flags embedding: .*epochs"):
        parse_stage_flags(["embedding:--epochs=zero"])


def test_export_runs_last_and_again_only_after_a_new_assembly(tmp_path, monkeypatch):
    calls = _fake_steps(monkeypatch)

    def evaluate(config):
        calls.append("evaluate")
        return {"timing_s": {}}

    def export(config):
        calls.append("export")
        paths = pipeline.export_paths(config)
        version = 1 if paths["saved_model"] is None else int(paths["saved_model"][-1]) + 1
        os.makedirs(os.path.join(paths["base"], str(version)))
        for key in ("tflite", "tflite_dynamic_range", "onnx"):
            open(paths[key], "w").close()

    monkeypatch.setattr(pipeline, "_evaluate", evaluate)
    monkeypatch.setattr(pipeline, "_export", export)
    monkeypatch.setattr("conceptmask_tf.evaluation.report.write_report",
                        lambda *args, **kwargs: None)
    config = PipelineConfig(data_root=_data_root(tmp_path), work_dir=str(tmp_path / "w"),
                            ablations=False, progress=False)
    result = run_pipeline(config, announce=lambda _: None)
    assert calls[-3:] == ["assemble", "evaluate", "export"]
    assert result.steps["export"] == "done"
    assert os.path.join(config.export_dir, "conceptmask", "1") in result.text()
    # The report is rewritten on every run with evaluation; the export follows the model.
    calls.clear()
    again = run_pipeline(config, announce=lambda _: None)
    assert calls == ["evaluate"] and again.steps["export"] == "reused"
    os.remove(stage_files.model_path(config.model_dir("segmentation"), "segmentation"))
    calls.clear()
    retrained = run_pipeline(config, announce=lambda _: None)
    assert calls == ["segmentation", "assemble", "evaluate", "export"]
    assert os.path.join(config.export_dir, "conceptmask", "2") in retrained.text()
    no_eval = PipelineConfig(data_root=config.data_root, work_dir=config.work_dir,
                             ablations=False, evaluate=False, progress=False)
    calls.clear()
    assert run_pipeline(no_eval, announce=lambda _: None).steps["export"] == "reused"
    assert calls == []


def test_pipeline_binary_flags_make_the_config(tmp_path):
    fv = flags.FlagValues()
    pipeline_bin.define_flags(fv)
    fv(["conceptmask-pipeline", "--data_root=/d", f"--work_dir={tmp_path}",
        "--preset=world_quality", "--noprogress", "--noexport",
        "--stage_flags=refinement:--epochs=3"])
    config = pipeline_bin.config_from_flags(fv)
    assert (config.preset, config.progress, config.export) == ("world_quality", False, False)
    assert config.stage_overrides == {"refinement": {"epochs": 3}}
    demo = flags.FlagValues()
    demo_bin.define_flags(demo)  # the pipeline's flags next to the world's, one --progress
    demo(["conceptmask-demo", "--noprogress"])
    assert demo.progress is False
