"""The typed presets: valid configs, one image size, and equal to their flagfiles."""

from __future__ import annotations

import dataclasses
import os

import pytest
from absl import flags

from conceptmask_tf import presets
from conceptmask_tf.bin import world as world_bin
from conceptmask_tf.data.world import WorldConfig
from conceptmask_tf.training import cli
from conceptmask_tf.training.config import CONFIG_CLASSES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGFILE = {"embedding": "stage1", "refinement": "stage2", "segmentation": "stage3",
            "saliency": "saliency"}
PATHS = {"data_root": "/r", "concepts_dir": "/w/concepts", "model_dir": "/w/models/x"}
INPUTS = {"refinement": {"embedding_model_dir": "/w/models/embedding"},
          "segmentation": {"refinement_model_dir": "/w/models/refinement"}}


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
@pytest.mark.parametrize("stage", presets.STAGES)
def test_each_flagfile_is_its_preset(name, stage):
    """The binaries' flagfiles (documented overrides) say what the typed preset says."""
    path = os.path.join(REPO, "flags", f"{name}_{FLAGFILE[stage]}.cfg")
    fv = flags.FlagValues()
    cli.define_flags(CONFIG_CLASSES[stage], fv)
    paths = {**PATHS, **INPUTS.get(stage, {})}
    fv(["binary", f"--flagfile={path}", *(f"--{k}={v}" for k, v in paths.items())])
    from_flagfile = cli.config_from_flags(CONFIG_CLASSES[stage], fv)
    typed = presets.get_preset(name).stage_config(stage, **PATHS, **INPUTS.get(stage, {}))
    assert from_flagfile == typed


def test_the_world_presets_are_made_for_the_default_world_flagfile():
    fv = flags.FlagValues()
    world_bin.define_flags(fv, with_out_dir=False)
    fv(["conceptmask-world", f"--flagfile={os.path.join(REPO, 'flags', 'world_default.cfg')}"])
    default_world = world_bin.config_from_flags(fv)
    assert default_world == WorldConfig()
    assert presets.WORLD.world == presets.WORLD_QUALITY.world == default_world
    assert presets.PAPER.world is None


def test_the_shared_settings_are_set_once():
    for preset in presets.PRESETS.values():
        assert {getattr(preset, s).image_size for s in presets.STAGES} == {preset.image_size}
    with pytest.raises(ValueError, match="segmentation works at image_size 64, the preset at"):
        dataclasses.replace(presets.WORLD, segmentation=dataclasses.replace(
            presets.WORLD.segmentation, image_size=64))
    assert (presets.WORLD.word_dim, presets.PAPER.word_dim) == (32, 512)


def test_stage_config_fills_paths_and_checks_overrides():
    config = presets.WORLD.stage_config("refinement", **PATHS, overrides={"epochs": 2},
                                        embedding_model_dir="/w/models/embedding")
    assert (config.data_root, config.model_dir, config.epochs) == ("/r", "/w/models/x", 2)
    assert config.embedding_model_dir == "/w/models/embedding"
    assert presets.WORLD.refinement.epochs == 12  # the preset itself is unchanged
    with pytest.raises(ValueError, match="unknown setting epoch"):
        presets.WORLD.stage_config("embedding", **PATHS, overrides={"epoch": 2})
    with pytest.raises(ValueError, match="unknown stage 'stage4'"):
        presets.WORLD.stage_config("stage4", **PATHS)
    with pytest.raises(ValueError, match="preset must be one of"):
        presets.get_preset("tiny")
