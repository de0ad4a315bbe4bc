"""Strategy, XLA and mixed-precision settings of a run."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conceptmask_tf.training import embedding, fit, refinement, segmentation
from conceptmask_tf.training.config import EmbeddingConfig, RefinementConfig, SegmentationConfig
from conceptmask_tf.training.strategy import (
    create_strategy,
    precision_policy,
    precision_policy_name,
    resolve_jit_compile,
)
from tests.trained_world import tiny_config


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown distribution strategy"):
        create_strategy("horovod")


def test_one_device_keeps_xla_and_full_precision():
    strategy = create_strategy("none")
    assert strategy.num_replicas_in_sync == 1
    assert resolve_jit_compile(True, strategy) and not resolve_jit_compile(False, strategy)
    assert precision_policy_name(False, strategy) == "float32"
    assert precision_policy_name(True, strategy) == "mixed_bfloat16"  # no GPU here


def test_precision_policy_is_restored_after_the_block():
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError), precision_policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        raise RuntimeError
    assert keras.config.dtype_policy().name == before


@pytest.mark.slow
def test_xla_step_gives_the_losses_of_the_plain_step(world, stage2):
    result = refinement.train(tiny_config(RefinementConfig, world, "xla", jit_compile=True,
                                          epochs=1, summary_images=0, keep_checkpoints=0))
    assert result.config.jit_compile
    for key, values in result.history.items():  # same seed and data as the stage2 fixture
        np.testing.assert_allclose(values[0], stage2.history[key][0], rtol=1e-3, err_msg=key)


@pytest.mark.slow
def test_mixed_precision_trains_in_bfloat16_and_restores_the_policy(world):
    result = embedding.train(tiny_config(EmbeddingConfig, world, "mixed", mixed_precision=True,
                                         epochs=2, summary_images=0, keep_checkpoints=0))
    assert result.model.get_layer("head_dense_0").compute_dtype == "bfloat16"
    assert result.model.get_layer("head_dense_0").kernel.dtype == "float32"
    assert np.isfinite(result.history["loss"]).all()
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.slow
def test_stage3_with_guided_attention_trains_under_xla_and_under_mixed_precision(
        world, stage2):
    # Found by benchmarks/gpu_training.py: the area resize of the guide masks had no XLA
    # kernel, and float32 masks and resizes met bfloat16 maps under mixed precision.
    for name, settings in (("xla3", {"jit_compile": True}),
                           ("mixed3", {"mixed_precision": True})):
        result = segmentation.train(tiny_config(
            SegmentationConfig, world, name, guided_attention_rate=0.5, epochs=1, steps=2,
            summary_images=0, keep_checkpoints=0, **settings))
        assert np.isfinite(result.history["loss"]).all(), name
    assert result.model.get_layer("decoder0").compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == "float32"


def test_area_resize_equals_tensorflows_and_compiles_with_xla():
    import tensorflow as tf

    from conceptmask_tf.models.tensor_ops import area_resize

    images = np.random.default_rng(0).uniform(size=(2, 32, 24, 1)).astype(np.float32)
    for size in ((16, 12), (12, 10), (7, 5), (40, 30)):  # down, uneven, up
        np.testing.assert_allclose(area_resize(tf.constant(images), size),
                                   tf.image.resize(images, size, method="area"), atol=1e-5)
    compiled = tf.function(lambda x: area_resize(x, (12, 10)), jit_compile=True)
    np.testing.assert_allclose(compiled(tf.constant(images)),
                               tf.image.resize(images, (12, 10), method="area"), atol=1e-5)
    assert area_resize(tf.constant(images, tf.bfloat16), (8, 6)).dtype == tf.bfloat16
    # [[1, 2, 3], [4, 5, 6]] to 1 x 2 by hand: each output covers 1.5 columns of both
    # rows: (1 + 2 / 2 + 4 + 5 / 2) / 3 = 17 / 6 and (2 / 2 + 3 + 5 / 2 + 6) / 3 = 25 / 6.
    small = tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])[None, :, :, None]
    np.testing.assert_allclose(area_resize(small, (1, 2))[0, :, :, 0], [[17 / 6, 25 / 6]],
                               rtol=1e-6)


def test_cosine_schedule_decays_from_the_learning_rate_to_zero_over_the_run():
    config = EmbeddingConfig(data_root="d", concepts_dir="c", model_dir="m", epochs=4,
                             steps=25, learning_rate=0.01, lr_schedule="cosine")
    optimizer = fit.make_optimizer(config)
    rates = []
    for step in (0, 50, 100):
        optimizer.iterations.assign(step)
        rates.append(float(optimizer.learning_rate))
    np.testing.assert_allclose(rates, [0.01, 0.005, 0.0], atol=1e-7)
    constant = fit.make_optimizer(EmbeddingConfig(data_root="d", concepts_dir="c",
                                                     model_dir="m", learning_rate=0.01))
    assert float(constant.learning_rate) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="steps per epoch"):
        fit.make_optimizer(EmbeddingConfig(data_root="d", concepts_dir="c",
                                              model_dir="m", lr_schedule="cosine"))
