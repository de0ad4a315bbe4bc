"""A stage variant is a small subclass of a stage: the shared skeleton runs its hooks."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from conceptmask_tf.training import embedding
from conceptmask_tf.training.config import EmbeddingConfig
from conceptmask_tf.training.stage import BuiltStage
from tests.trained_world import tiny_config


class UntrainedTagsEmbedding(embedding.EmbeddingStage):
    """Stage 1 that reports its tag loss but does not train on it, under its own name."""

    model_file = "embedding_untrained_tags.keras"

    def build(self, config, concepts, examples) -> BuiltStage:
        built = super().build(config, concepts, examples)
        return dataclasses.replace(built, loss_weights={"embedding": 1.0, "tags": 0.0})

    def facts(self, config, concepts, examples, built) -> dict:
        return {**super().facts(config, concepts, examples, built), "variant": "no tag loss"}


@pytest.mark.slow
def test_a_stage_variant_overrides_its_hooks_and_keeps_the_rest_of_the_skeleton(world):
    config = tiny_config(EmbeddingConfig, world, "stage1_variant", epochs=1, steps=2,
                         summary_images=0)
    assert config.tag_loss_weight > 0  # the stock stage would weigh the tag loss by it
    result = UntrainedTagsEmbedding().train(config)

    history = result.history
    assert history["tags_loss"][0] > 0  # computed and reported...
    # ...but not trained on.
    np.testing.assert_allclose(history["loss"], history["embedding_loss"], rtol=1e-5)
    model_dir = result.config.model_dir
    assert result.model_path == os.path.join(model_dir, "embedding_untrained_tags.keras")
    assert os.path.exists(result.model_path)
    assert result.steps == 2 and result.config.steps == 2
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        runtime = json.load(f)["runtime"]
    assert runtime["variant"] == result.facts["variant"] == "no tag loss"
    # The skeleton's fact first, then the stock stage's, then the variant's.
    assert list(result.facts)[:3] == ["num_examples", "vocabulary_size", "embedding_dim"]
    assert list(result.facts)[-1] == "variant" and runtime["num_examples"] > 0
