"""Training of the three Concept Mask stages with `model.fit` (paper §4).

    from conceptmask_tf.training import embedding, refinement, segmentation
    from conceptmask_tf.training.config import EmbeddingConfig

    result = embedding.train(EmbeddingConfig(data_root=..., concepts_dir=..., model_dir=...))

Modules:
    config: `EmbeddingConfig`, `RefinementConfig`, `SegmentationConfig`,
        `SaliencyConfig`; config.json I/O.
    embedding / refinement / segmentation: each stage's `train(config) -> TrainResult`
        (stages 2 and 3 also their `RefinementTrainer` / `SegmentationTrainer`, the
        `compute_loss` wrappers `fit` runs).
    saliency: the saliency baseline's `train` (a concept-blind foreground network of the
        stage-3 architecture; the evaluation's `saliency` row).
    stage: the skeleton every stage fills in (`Stage`: read examples, build, fit).
    fit, strategy, callbacks, summary_images: what the stages share (runtime, fit,
        resume, checkpoints, TensorBoard pictures).

The model-dir layout is `conceptmask_tf.models.stage_files`; the targets per stage
(zero-shot concepts never are one) are `conceptmask_tf.concepts.concept_sets`.
    cli: the binaries' flags, generated from the config dataclasses.

This package imports no TensorFlow until a stage module is imported.
"""

from conceptmask_tf.training.config import (
                                            EmbeddingConfig,
                                            RefinementConfig,
                                            SaliencyConfig,
                                            SegmentationConfig,
                                            TrainingConfig,
                                            load_config,
)

__all__ = ["EmbeddingConfig", "RefinementConfig", "SaliencyConfig", "SegmentationConfig",
           "TrainingConfig", "load_config"]
