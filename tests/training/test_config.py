"""Config dataclasses, config.json and the flags generated from them."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest
from absl import flags

from conceptmask_tf.training import cli
from conceptmask_tf.training.config import (
    EmbeddingConfig,
    RefinementConfig,
    SegmentationConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
PATHS = {"data_root": "/d", "concepts_dir": "/c", "model_dir": "/m"}


def _parse(config_cls, *args):
    fv = flags.FlagValues()  # a private registry: the global one stays untouched
    cli.define_flags(config_cls, fv)
    fv(["prog", *args])
    return cli.config_from_flags(config_cls, fv)


def test_config_json_round_trips_every_stage(tmp_path):
    configs = [
        EmbeddingConfig(**PATHS, hidden_dims=(64, 32), steps=7, backbone_weights="/w.h5"),
        RefinementConfig(**PATHS, embedding_model_dir="/e", no_neg=True, matching_top_n=0),
        RefinementConfig(**PATHS, embedding_model_dir="/e", matching_binarize="raw",
                         gamma_rule="paper", similarity="dot"),
        SegmentationConfig(**PATHS, refinement_model_dir="/r", attention_scales=(1.0, 2.5),
                           single_att=True),
    ]
    for config in configs:
        model_dir = tmp_path / config.stage
        path = save_config(config, str(model_dir), {"num_replicas": 2})
        document = json.loads(pathlib.Path(path).read_text())
        assert document["stage"] == config.stage and document["runtime"] == {"num_replicas": 2}
        assert load_config(str(model_dir)) == config  # tuples come back as tuples
        assert config_from_dict(type(config), config_to_dict(config)) == config


def test_invalid_settings_are_refused_with_every_problem_named():
    with pytest.raises(ValueError, match="epochs must be >= 1.*distribution_strategy"):
        EmbeddingConfig(**PATHS, epochs=0, distribution_strategy="horovod")
    with pytest.raises(ValueError, match="embedding_model_dir is required"):
        RefinementConfig(**PATHS, embedding_model_dir="")
    with pytest.raises(ValueError, match="unknown EmbeddingConfig fields: colour"):
        config_from_dict(EmbeddingConfig, {**PATHS, "colour": 1})
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_config("/nonexistent")


def test_refinement_choices_defaults_flags_and_library_names():
    config = RefinementConfig(**PATHS, embedding_model_dir="/e")
    assert (config.matching_binarize, config.gamma_rule, config.similarity) == (
        "min_max", "symmetric", "cosine")
    parsed = _parse(RefinementConfig, *[f"--{k}={v}" for k, v in PATHS.items()],
                    "--embedding_model_dir=/e", "--matching_binarize=raw",
                    "--gamma_rule=paper", "--similarity=dot")
    assert (parsed.matching_binarize, parsed.gamma_rule, parsed.similarity) == (
        "raw", "paper", "dot")
    for flag in ("--matching_binarize=otsu", "--gamma_rule=softmax", "--similarity=l2"):
        with pytest.raises(flags.IllegalFlagValueError):
            _parse(RefinementConfig, *[f"--{k}={v}" for k, v in PATHS.items()],
                   "--embedding_model_dir=/e", flag)
    with pytest.raises(ValueError, match="gamma_rule must be one of"):
        RefinementConfig(**PATHS, embedding_model_dir="/e", gamma_rule="softmax")
    # The choices are the names the library takes (config.py does not import it).
    from conceptmask_tf.concepts.overlap import GAMMA_RULES
    from conceptmask_tf.models.concept_attention import SIMILARITIES
    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(RefinementConfig)}
    assert choices["gamma_rule"] == GAMMA_RULES and choices["similarity"] == SIMILARITIES
    assert choices["matching_binarize"] == ("min_max", "raw")


def test_single_att_keeps_only_the_first_attention_scale():
    config = SegmentationConfig(**PATHS, refinement_model_dir="/r", attention_scales=(1, 2.5))
    assert config.scales == (1, 2.5)
    assert dataclasses.replace(config, single_att=True).scales == (1,)


def test_flags_map_to_config_fields_with_types_and_defaults():
    config = _parse(SegmentationConfig, "--data_root=/d", "--concepts_dir=/c", "--model_dir=/m",
                    "--refinement_model_dir=/r", "--attention_scales=1,2.5", "--single_att",
                    "--steps=12", "--mixed_precision", "--distribution_strategy=mirrored")
    assert config == SegmentationConfig(**PATHS, refinement_model_dir="/r",
                                        attention_scales=(1.0, 2.5), single_att=True, steps=12,
                                        mixed_precision=True,
                                        distribution_strategy="mirrored")
    assert _parse(RefinementConfig, *[f"--{k}={v}" for k, v in PATHS.items()],
                  "--embedding_model_dir=/e", "--no_neg").no_neg
    with pytest.raises(flags.IllegalFlagValueError):
        _parse(EmbeddingConfig, *[f"--{k}={v}" for k, v in PATHS.items()], "--backbone=vgg")
    with pytest.raises(ValueError, match="--hidden_dims: expected comma-separated int"):
        _parse(EmbeddingConfig, *[f"--{k}={v}" for k, v in PATHS.items()], "--hidden_dims=a,b")


@pytest.mark.parametrize("stage, config_cls", [(1, EmbeddingConfig), (2, RefinementConfig),
                                               (3, SegmentationConfig)])
def test_flagfiles_parse_into_valid_configs(stage, config_cls):
    paths = ["--data_root=/d", "--concepts_dir=/c", "--model_dir=/m",
             "--embedding_model_dir=/e", "--refinement_model_dir=/r"]
    names = {f.name for f in dataclasses.fields(config_cls)}
    paths = [p for p in paths if p[2:].split("=")[0] in names]
    world = _parse(config_cls, f"--flagfile={ROOT / 'flags' / f'world_stage{stage}.cfg'}",
                   *paths)
    assert world.image_size == 128 and world.data_root == "/d"  # command line wins
    paper = _parse(config_cls, f"--flagfile={ROOT / 'flags' / f'paper_stage{stage}.cfg'}")
    assert paper.image_size == 300 and paper.data_root.startswith("/data/")
    if stage == 1:
        assert paper.backbone == "resnet50" and world.backbone == "local_convnet"
        assert paper.pooling == "before_head"  # the paper's order for ImageNet backbones
        assert paper.tag_loss_weight == 0 and world.tag_loss_weight > 0  # departure 16
    if stage == 2:
        assert (paper.matching_top_n, paper.matching_weight) == (800, 1e-6)
    if stage == 3:
        assert [round(s * paper.image_size) for s in paper.scales] == [300, 700]
