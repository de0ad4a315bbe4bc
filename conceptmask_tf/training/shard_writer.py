"""A stage's training examples, read from a data root as the stage reads them, written to
sharded TFRecord files (`conceptmask-shards`; `data.shards`).

The shards hold exactly the examples that training on the data root would see: the stage's
own `read_examples` and `elements` make the rows (concept resolution, zero-shot exclusion,
box clipping, RLE checks), so they are tied to the concepts given (their fingerprint is
kept and checked when training reads them) and to the stage settings that pick the rows
(stage 1's tag loss on or off, stage 2's label loss, `min_box_examples`).
"""

from __future__ import annotations

import dataclasses

from conceptmask_tf.data.shards import ShardSet, write_shards
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.training.config import TrainingConfig
from conceptmask_tf.training.embedding import EmbeddingStage
from conceptmask_tf.training.refinement import RefinementStage
from conceptmask_tf.training.segmentation import SegmentationStage
from conceptmask_tf.training.stage import Stage, concepts_fingerprint

STAGES: dict[str, type[Stage]] = {"embedding": EmbeddingStage, "refinement": RefinementStage,
                                  "segmentation": SegmentationStage}


@dataclasses.dataclass(frozen=True)
class WrittenShards:
    """What `write_stage_shards` wrote.

    Attributes:
        shards: The shard folder.
        skips: Records dropped while making the examples (annotation problems, filters),
            also kept in the shards and added to a training run's skips.
    """

    shards: ShardSet
    skips: SkipCounter

    def summary(self) -> str:
        shards = self.shards
        lines = [(f"wrote {shards.num_examples} {shards.stage} examples ({shards.num_images} "
                  f"images) in {len(shards.files)} files to {shards.directory}"),
                 f"  train from them with --shards={shards.directory}"]
        report = self.skips.report()
        return "\n".join(lines + ([report] if report else []))


def write_stage_shards(config: TrainingConfig, output_dir: str, *, num_shards: int,
                       num_threads: int = 8, shuffle_seed: int | None = 0,
                       overwrite: bool = False, show_progress: bool = True) -> WrittenShards:
    """Writes the training examples of `config`'s stage from its data root to shards.

    Args:
        config: The stage's training configuration (its data root, concepts and the
            settings that pick the examples; its model dirs are not used).
        output_dir: The shard folder (any TensorFlow filesystem).
        num_shards: Files to write (`data.shards.write_shards`).
        num_threads: Files written at once.
        shuffle_seed: Permutes the examples before they are split; None keeps their order.
        overwrite: Replace a folder holding another plan's shards.
        show_progress: A progress bar.

    Raises:
        ValueError: A stage that cannot be written (the saliency baseline) or bad
            arguments.
        FileNotFoundError, DataError: As the stage's training would raise for its input.
    """
    if config.stage not in STAGES:
        raise ValueError(f"stage {config.stage!r} cannot be written to shards; stages: "
                         f"{', '.join(STAGES)}")
    stage = STAGES[config.stage]()
    concepts = stage.load_concepts(config)
    skips = SkipCounter(config.data_root)
    examples, _ = stage.read_examples(config, concepts, skips)
    elements = stage.elements(config, examples, skips)
    metadata = {"concepts": concepts_fingerprint(concepts),
                "index": dict(getattr(examples, "index", {})),
                "facts": stage.example_facts(examples),
                "data_root": config.data_root, "concepts_dir": config.concepts_dir}
    shards = write_shards(output_dir, elements, stage=stage.shard_stage,
                          num_shards=num_shards, skips=skips, metadata=metadata,
                          shuffle_seed=shuffle_seed, num_threads=num_threads,
                          overwrite=overwrite, show_progress=show_progress)
    return WrittenShards(shards, skips)
