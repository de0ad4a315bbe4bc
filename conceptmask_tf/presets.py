"""The presets: every stage's settings and the data and concept settings, typed, once.

A `Preset` holds the configuration of each training step as the stage's config dataclass
(`training.config`), with the work-dir paths left as placeholders that `stage_config`
fills in, plus what the stages share: the image side S, the word-vector dimension D and,
for the concept-world presets, the world they were chosen on. `conceptmask-pipeline
--preset=NAME` (`pipeline.run_pipeline`) trains with them.

Every value was chosen on the concept world's validation split (the `world` presets) or
follows the paper (`paper`); the reasons are in the comments of the matching flagfiles,
`flags/<name>_stage{1,2,3}.cfg` and `flags/<name>_saliency.cfg`, which the stage binaries
take (`--flagfile`) and which tests/test_presets.py keeps equal to these presets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from conceptmask_tf.data.world.config import WorldConfig
from conceptmask_tf.training.config import (
    EmbeddingConfig,
    RefinementConfig,
    SaliencyConfig,
    SegmentationConfig,
    TrainingConfig,
)

STAGES = ("embedding", "refinement", "segmentation", "saliency")
# Placeholders of the paths a run fills in (`Preset.stage_config`).
_PATHS = {"data_root": "<data_root>", "concepts_dir": "<work_dir>/concepts",
          "model_dir": "<work_dir>/models/<step>"}
_INPUT_PATHS = {"refinement": {"embedding_model_dir": "<work_dir>/models/embedding"},
                "segmentation": {"refinement_model_dir": "<work_dir>/models/refinement"}}


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named set of stage configurations.

    Attributes:
        name: The preset's name (`conceptmask-pipeline --preset`).
        description: One line on what it is for.
        image_size: S, the training side of every stage (and of the assembled model).
        word_dim: D, the word-vector dimension of the concepts step.
        world: The concept world the settings were chosen on; None for real data.
        embedding, refinement, segmentation, saliency: Each stage's configuration, paths
            as placeholders.
    """

    name: str
    description: str
    image_size: int
    word_dim: int
    world: WorldConfig | None
    embedding: EmbeddingConfig
    refinement: RefinementConfig
    segmentation: SegmentationConfig
    saliency: SaliencyConfig

    def __post_init__(self) -> None:
        for stage in STAGES:
            size = getattr(self, stage).image_size
            if size != self.image_size:
                raise ValueError(f"preset {self.name}: {stage} works at image_size {size}, "
                                 f"the preset at {self.image_size}")

    def stage_config(self, stage: str, *, data_root: str, concepts_dir: str, model_dir: str,
                     overrides: Mapping[str, Any] | None = None,
                     **input_dirs: str) -> TrainingConfig:
        """The configuration of one training step of a run.

        Args:
            stage: "embedding", "refinement", "segmentation" or "saliency".
            data_root, concepts_dir, model_dir: The run's paths.
            overrides: Other fields to change (e.g. {"epochs": 1}); names and values are
                checked by the stage's config class.
            **input_dirs: The model dirs the stage reads (`embedding_model_dir` for
                refinement, `refinement_model_dir` for segmentation).

        Raises:
            ValueError: An unknown stage or field, or a bad value.
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        config = getattr(self, stage)
        names = {f.name for f in dataclasses.fields(config)}
        unknown = sorted(set(overrides or {}) - names)
        if unknown:
            raise ValueError(f"{stage}: unknown setting {', '.join(unknown)}")
        return dataclasses.replace(config, data_root=data_root, concepts_dir=concepts_dir,
                                   model_dir=model_dir, **input_dirs, **dict(overrides or {}))


def _stages(image_size: int, embedding: dict[str, Any], refinement: dict[str, Any],
            segmentation: dict[str, Any], saliency: dict[str, Any]) -> dict[str, Any]:
    """The four stage configs at one image size, with placeholder paths."""
    settings = {"embedding": (EmbeddingConfig, embedding),
                "refinement": (RefinementConfig, refinement),
                "segmentation": (SegmentationConfig, segmentation),
                "saliency": (SaliencyConfig, saliency)}
    return {stage: cls(**_PATHS, **_INPUT_PATHS.get(stage, {}), image_size=image_size,
                       **values)
            for stage, (cls, values) in settings.items()}


# What the world presets share: schedules and sizes for 2 CPU cores on 128 px images.
_WORLD_EMBEDDING = {"backbone": "local_convnet", "tag_loss_weight": 10.0,
                    "tag_loss_temperature": 0.1, "hidden_dims": (256, 256),
                    "batch_size": 32, "learning_rate": 0.002, "optimizer": "adam",
                    "scale_jitter": 0.15, "save_freq": 50, "summary_images": 6, "seed": 0}
_WORLD_REFINEMENT = {"batch_size": 16, "learning_rate": 0.001, "optimizer": "adam",
                     "scale_jitter": 0.15, "hidden_dim": 64, "location_term": True,
                     "max_concepts": 12, "matching_top_n": 24, "matching_weight": 0.001,
                     "matching_threshold": 0.5, "spatial_weight": 1.0, "save_freq": 50,
                     "summary_images": 6, "seed": 0}
_WORLD_SEGMENTATION = {"attention_scales": (1.0, 2.0), "batch_size": 16,
                       "learning_rate": 0.002, "optimizer": "adam", "lr_schedule": "cosine",
                       "scale_jitter": 0.1, "encoder_widths": (32, 64, 96, 128),
                       "decoder_widths": (64, 32, 16), "save_freq": 50, "summary_images": 6,
                       "seed": 0, "positive_weight": 2.0, "guided_attention_rate": 0.5}
_WORLD_SALIENCY = {"batch_size": 16, "epochs": 12, "learning_rate": 0.002,
                   "optimizer": "adam", "scale_jitter": 0.1,
                   "encoder_widths": (32, 64, 96, 128), "decoder_widths": (64, 32, 16),
                   "positive_weight": 1.0, "save_freq": 50, "summary_images": 6, "seed": 0}

WORLD = Preset(
    name="world", description="the concept world in about 15 minutes on 2 CPU cores "
                              "(conceptmask-demo)",
    image_size=128, word_dim=32, world=WorldConfig(),
    **_stages(128,
              embedding={**_WORLD_EMBEDDING, "epochs": 8},
              refinement={**_WORLD_REFINEMENT, "epochs": 12, "finetune_from": "conv4"},
              segmentation={**_WORLD_SEGMENTATION, "epochs": 6, "cache_attention": True},
              saliency=_WORLD_SALIENCY))

WORLD_QUALITY = Preset(
    name="world_quality", description="the concept world with longer schedules: about 60 "
                                      "minutes on 2 CPU cores",
    image_size=128, word_dim=32, world=WorldConfig(),
    **_stages(128,
              embedding={**_WORLD_EMBEDDING, "epochs": 32},
              refinement={**_WORLD_REFINEMENT, "epochs": 60},
              segmentation={**_WORLD_SEGMENTATION, "epochs": 16,
                            "weak_attention": "original"},
              saliency=_WORLD_SALIENCY))

# The paper's setup (§4, §5.1): ResNet-50 at 300 px (and 700 px attention), 512-d vectors,
# for 8 GPUs; what the paper does not give (batch sizes, schedules) is ours.
_PAPER_COMMON = {"scale_jitter": 0.2, "shuffle_buffer": 20000,
                 "distribution_strategy": "mirrored", "save_freq": 2000,
                 "summary_images": 8, "seed": 0}
_PAPER_MASKS = {"encoder_widths": (32, 64, 96, 128), "decoder_widths": (64, 32, 16),
                "batch_size": 32, "epochs": 12, "learning_rate": 0.001, "optimizer": "adam"}

PAPER = Preset(
    name="paper", description="the paper's setup: ResNet-50, 300/700 px, 512-d vectors, "
                              "8 GPUs",
    image_size=300, word_dim=512, world=None,
    **_stages(300,
              embedding={**_PAPER_COMMON, "backbone": "resnet50",
                         "backbone_weights": "imagenet", "hidden_dims": (1024, 1024),
                         "pooling": "before_head", "batch_size": 256, "epochs": 8,
                         "learning_rate": 0.01, "optimizer": "sgd",
                         "mixed_precision": True},
              refinement={**_PAPER_COMMON, "batch_size": 64, "epochs": 10,
                          "learning_rate": 0.001, "optimizer": "adam", "hidden_dim": 256,
                          "max_concepts": 16, "min_box_examples": 8, "matching_top_n": 800,
                          "matching_weight": 1e-6, "matching_threshold": 0.5,
                          "spatial_weight": 1.0},
              segmentation={**_PAPER_COMMON, **_PAPER_MASKS,
                            "attention_scales": (1.0, 2.3333333)},
              saliency={**_PAPER_COMMON, **_PAPER_MASKS}))

PRESETS: dict[str, Preset] = {preset.name: preset for preset in (WORLD, WORLD_QUALITY, PAPER)}


def get_preset(name: str) -> Preset:
    """The preset of that name.

    Raises:
        ValueError: An unknown name (the message lists the presets).
    """
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {name!r}")
    return PRESETS[name]
