"""The backbone registry: one place adds a backbone to build_backbone, configs and flags."""

from __future__ import annotations

import keras
import pytest
from absl import flags

from conceptmask_tf.models import PixelPreprocessing, build_backbone, output_stride
from conceptmask_tf.models import backbone as backbone_lib
from conceptmask_tf.training import cli
from conceptmask_tf.training.config import EmbeddingConfig
from tests.models.tiny import images

PATHS = {"data_root": "/d", "concepts_dir": "/c", "model_dir": "/m"}
BUILT_IN = ("resnet50", "mobilenet_v3_small", "small_convnet", "local_convnet")


@pytest.fixture
def registry():
    """The registry, restored after the test (whatever it registered)."""
    saved = dict(backbone_lib.BACKBONES)
    yield backbone_lib.BACKBONES
    backbone_lib.BACKBONES.clear()
    backbone_lib.BACKBONES.update(saved)


def test_built_in_backbones_are_registered_in_order():
    assert backbone_lib.backbone_names() == BUILT_IN


def test_a_registered_backbone_is_built_by_name_and_listed_everywhere(registry):
    calls = []

    @backbone_lib.register_backbone("tiny_test_backbone")
    def tiny(input_shape, weights):
        calls.append((input_shape, weights))
        inputs = keras.Input(shape=input_shape, name="image")
        x = PixelPreprocessing("tf", name="preprocessing")(inputs)
        x = keras.layers.Conv2D(4, 3, strides=4, padding="same", name="conv")(x)
        return keras.Model(inputs, x, name="backbone")

    assert registry["tiny_test_backbone"] is tiny
    assert backbone_lib.backbone_names() == (*BUILT_IN, "tiny_test_backbone")
    model = build_backbone("tiny_test_backbone", input_shape=(32, 32, 3))
    assert calls == [((32, 32, 3), None)]
    assert output_stride(model) == 4 and model(images(1, 32)).shape == (1, 8, 8, 4)
    # Config validation and the --backbone flag take it with no other edit.
    assert EmbeddingConfig(**PATHS, backbone="tiny_test_backbone").backbone == (
        "tiny_test_backbone")
    fv = flags.FlagValues()
    cli.define_flags(EmbeddingConfig, fv)
    fv(["prog", *[f"--{k}={v}" for k, v in PATHS.items()], "--backbone=tiny_test_backbone"])
    assert cli.config_from_flags(EmbeddingConfig, fv).backbone == "tiny_test_backbone"


def test_a_name_is_registered_once(registry):
    with pytest.raises(ValueError, match="'small_convnet' is already registered"):
        backbone_lib.register_backbone("small_convnet")(lambda input_shape, weights: None)
    assert backbone_lib.backbone_names() == BUILT_IN


def test_unknown_backbone_error_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown backbone 'vgg'") as info:
        build_backbone("vgg")
    for name in BUILT_IN:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="backbone must be one of"):
        EmbeddingConfig(**PATHS, backbone="vgg")


def test_a_ready_model_is_returned_as_is():
    model = build_backbone("small_convnet", input_shape=(32, 32, 3))
    assert build_backbone(model) is model
    with pytest.raises(ValueError, match="weights apply to a backbone given by name"):
        build_backbone(model, weights="/w.weights.h5")


def test_convnets_have_no_imagenet_weights():
    with pytest.raises(ValueError, match="local_convnet has no imagenet weights"):
        build_backbone("local_convnet", weights="imagenet")
