"""conceptmask-world's flags are generated from WorldConfig's fields."""

import dataclasses

import pytest
from absl import flags

from conceptmask_tf.bin import world as world_bin
from conceptmask_tf.data.world import WorldConfig
from conceptmask_tf.data.world.config import IMAGE_FORMATS, MASK_FORMATS


def _flags(**kwargs):
    fv = flags.FlagValues()  # a private registry: the global one stays untouched
    world_bin.define_flags(fv, **kwargs)
    return fv


def test_every_field_is_a_flag_with_its_default_and_help():
    fv = _flags()
    fields = dataclasses.fields(WorldConfig)
    assert set(fv) == {f.name for f in fields} | {"out_dir", "overwrite", "progress"}
    for field in fields:
        assert fv[field.name].default == field.default, field.name
        assert fv[field.name].help.endswith(field.metadata["help"]), field.name
    assert fv["image_format"].parser.enum_values == list(IMAGE_FORMATS)
    assert fv["mask_format"].parser.enum_values == list(MASK_FORMATS)
    assert set(_flags(with_out_dir=False)) == {f.name for f in fields} | {"progress"}


def test_flags_parse_into_a_config_and_bad_values_are_refused():
    fv = _flags()
    fv(["world", "--out_dir=/x", "--seed=3", "--val_fraction=0.5", "--image_format=png",
        "--oracle_boxes", "--noprogress"])
    assert world_bin.config_from_flags(fv) == WorldConfig(
        seed=3, val_fraction=0.5, image_format="png", oracle_boxes=True)
    with pytest.raises(flags.IllegalFlagValueError):
        _flags()(["world", "--out_dir=/x", "--mask_format=bitmap"])
    fv = _flags()
    fv(["world", "--out_dir=/x", "--num_images=0"])
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        world_bin.config_from_flags(fv)
