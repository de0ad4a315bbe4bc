"""A tiny concept world with concept vectors, and the three stages trained on it once.

Stage fixtures train with the settings of `tiny_config`: 32 px images, small widths, a few
short epochs; later stages start from the earlier stages' model dirs, as users run them.
The fixtures are registered once for the whole suite by tests/conftest.py; a test using
`stage1`, `stage2` or `stage3` trains, so it is marked slow.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from conceptmask_tf.concepts.build import build_concepts
from conceptmask_tf.data.world import WorldConfig, generate_world
from conceptmask_tf.training import embedding, refinement, segmentation
from conceptmask_tf.training.config import (
    EmbeddingConfig,
    RefinementConfig,
    SaliencyConfig,
    SegmentationConfig,
    TrainingConfig,
)

WORD_DIM = 16
COMMON = {"image_size": 32, "batch_size": 8, "epochs": 4, "steps": 5, "learning_rate": 3e-3,
          "save_freq": 3, "keep_checkpoints": 1, "summary_images": 2, "seed": 0}
STAGE = {
    EmbeddingConfig: {"backbone": "small_convnet", "hidden_dims": (32, 32),
                      "tag_loss_weight": 5.0},
    RefinementConfig: {"hidden_dim": 16, "max_concepts": 6, "matching_top_n": 8,
                       "matching_weight": 0.1, "spatial_weight": 0.5},
    SegmentationConfig: {"encoder_widths": (8, 8, 8, 8), "decoder_widths": (8, 8, 8)},
    SaliencyConfig: {"encoder_widths": (8, 8, 8, 8), "decoder_widths": (8, 8, 8)},
}


@dataclasses.dataclass(frozen=True)
class World:
    root: str
    concepts_dir: str
    work: str


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    work = str(tmp_path_factory.mktemp("training"))
    root = os.path.join(work, "world")
    generate_world(WorldConfig(seed=5, num_images=56, image_size=32, num_eval_images=12,
                               min_eval_positives=2), root, progress=False)
    concepts_dir = os.path.join(work, "concepts")
    build_concepts(os.path.join(root, "tags.jsonl"), concepts_dir, WORD_DIM, data_root=root,
                   overlap_source="both")
    return World(root, concepts_dir, work)


def tiny_config(cls: type[TrainingConfig], world: World, name: str,
                **overrides) -> TrainingConfig:
    """The test settings for a stage, model dir `<work>/<name>`."""
    upstream = {RefinementConfig: {"embedding_model_dir": os.path.join(world.work, "stage1")},
                SegmentationConfig: {"refinement_model_dir": os.path.join(world.work, "stage2")}}
    values = {**COMMON, **STAGE[cls], **upstream.get(cls, {}), **overrides}
    return cls(data_root=world.root, concepts_dir=world.concepts_dir,
               model_dir=os.path.join(world.work, name), **values)


@pytest.fixture(scope="session")
def stage1(world):
    return embedding.train(tiny_config(EmbeddingConfig, world, "stage1"))


@pytest.fixture(scope="session")
def stage2(world, stage1):
    return refinement.train(tiny_config(RefinementConfig, world, "stage2"))


@pytest.fixture(scope="session")
def stage3(world, stage2):
    return segmentation.train(tiny_config(SegmentationConfig, world, "stage3"))
