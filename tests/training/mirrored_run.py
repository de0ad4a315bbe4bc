"""Child process of test_mirrored.py: each stage single-device and under MirroredStrategy.

Logical devices must be configured before TensorFlow initialises, hence a process of its
own. Usage: python -m tests.training.mirrored_run '<World as JSON>'; prints one JSON line:
per stage the histories of both runs, the mirrored run's replicas, XLA setting and
replica drift of BatchNorm statistics, and the losses of one fixed batch evaluated by the
mirrored model (distributed, inference mode) and computed eagerly on one device.
"""

import tensorflow as tf

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import json
import sys

from conceptmask_tf.concepts.concept_sets import (
    load_training_concepts,
    soft_topic_targets,
    tag_row_matrix,
)
from conceptmask_tf.data.boxes import load_box_images
from conceptmask_tf.data.coco import read_coco_instances
from conceptmask_tf.data.datasets import (
    embedding_dataset,
    refinement_dataset,
    segmentation_dataset,
)
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.tags import read_tag_corpus
from conceptmask_tf.losses import CosineEmbeddingLoss, TagLoss
from conceptmask_tf.training import embedding, refinement, segmentation
from conceptmask_tf.training.config import EmbeddingConfig, RefinementConfig, SegmentationConfig
from tests.trained_world import World, tiny_config

BATCH = {"image_size": 32, "batch_size": 8, "training": False}


def _one(dataset):
    """The first batch, with its cardinality declared: the pipelines drop bad images, so
    theirs is unknown, and a distributed evaluation of a dataset of unknown size
    averages its loss as if a replica's half of the batch were missing."""
    return dataset.take(1).apply(tf.data.experimental.assert_cardinality(1))


def _embedding_batch(world, result):
    concepts = load_training_concepts(world.root, world.concepts_dir)
    corpus = read_tag_corpus(f"{world.root}/tags.jsonl", with_images=True)
    paths, targets = soft_topic_targets(corpus, concepts, SkipCounter())
    rows = tag_row_matrix(corpus, concepts, paths)
    batch = _one(embedding_dataset(world.root, paths, targets, tag_rows=rows, **BATCH))
    weight = result.config.tag_loss_weight
    tag_loss = TagLoss(len(concepts.embeddings.vocabulary), concepts.excluded_rows().tolist())

    def direct(images, targets):
        outputs = result.trainer(images)
        terms = {"embedding_loss": CosineEmbeddingLoss()(targets["embedding"],
                                                         outputs["embedding"]),
                 "tags_loss": tag_loss(targets["tags"], outputs["tags"])}
        return {"loss": terms["embedding_loss"] + weight * terms["tags_loss"], **terms}

    return batch, direct


def _refinement_batch(world, result):
    batch = _one(refinement_dataset(world.root, load_box_images(DataRoot(world.root)),
                                    _target_index(world, result), mask_size=4,
                                    max_concepts=6, **BATCH))
    trainer = result.trainer

    def direct(features, targets):
        outputs = trainer(features)
        terms = {"box_loss": trainer.box_loss(targets, outputs["box_logits"]),
                 "matching_loss": trainer.matching_loss(
                     {"matching_masks": outputs["matching_masks"],
                      "matching_valid": outputs["matching_valid"]}, outputs["matching_logits"]),
                 "spatial_loss": trainer.spatial_loss(
                     {**targets, "concept_ids": features["concept_ids"]},
                     outputs["spatial_logits"])}
        return {"loss": sum(terms.values()), **terms}

    return batch, direct


def _segmentation_batch(world, result):
    masked = [m for m in read_coco_instances(DataRoot(world.root).coco_instances) if m.masks]
    batch = _one(segmentation_dataset(world.root, masked, _target_index(world, result),
                                      **BATCH))
    trainer = result.trainer

    def direct(features, targets):
        return {"loss": trainer.mask_loss(targets, trainer(features))}

    return batch, direct


def _replica_drift(result) -> float:
    """Largest difference between the replicas' copies of a non-trainable variable."""
    strategy = result.trainer.distribute_strategy
    drift = 0.0
    for variable in result.model.non_trainable_variables:
        first, *others = strategy.experimental_local_results(variable.value)
        drift = max([drift, *(float(tf.reduce_max(tf.abs(first - o))) for o in others)])
    return drift


def _target_index(world, result) -> dict[str, int]:
    with open(f"{result.config.model_dir}/config.json") as f:
        targets = json.load(f)["runtime"]["target_concepts"]
    vocabulary = load_training_concepts(world.root, world.concepts_dir).embeddings.vocabulary
    return {c: vocabulary.index(c) for c in targets}


STAGES = (("embedding", embedding, EmbeddingConfig, _embedding_batch),
          ("refinement", refinement, RefinementConfig, _refinement_batch),
          ("segmentation", segmentation, SegmentationConfig, _segmentation_batch))


def main(world: World) -> dict:
    results = {}
    for name, module, cls, fixed_batch in STAGES:
        runs = {}
        for mode in ("single", "mirrored"):
            config = tiny_config(cls, world, f"{name}_{mode}", epochs=1, steps=3,
                                 summary_images=0, keep_checkpoints=0,
                                 distribution_strategy="none" if mode == "single" else
                                 "mirrored", jit_compile=mode == "mirrored")
            runs[mode] = module.train(config)
        mirrored = runs["mirrored"]
        with open(f"{mirrored.config.model_dir}/config.json") as f:
            runtime = json.load(f)["runtime"]
        batch, direct = fixed_batch(world, mirrored)
        results[name] = {
            "single": runs["single"].history, "mirrored": mirrored.history,
            "replicas": runtime["num_replicas"], "jit_compile": mirrored.config.jit_compile,
            "strategy": type(mirrored.trainer.distribute_strategy).__name__,
            "replica_drift": _replica_drift(mirrored),
            "distributed": mirrored.trainer.evaluate(batch, verbose=0, return_dict=True),
            "direct": {k: float(v) for k, v in direct(*next(iter(batch))).items()}}
    return results


if __name__ == "__main__":
    print(json.dumps(main(World(**json.loads(sys.argv[1])))))
