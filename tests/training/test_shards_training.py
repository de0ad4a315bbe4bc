"""Training from shards: each stage's shards hold exactly the examples it reads from the
data root, a stage trains from them, and shards of other concepts or settings are refused."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.concepts.concept_sets import load_training_concepts
from conceptmask_tf.data import shards as shard_files
from conceptmask_tf.data.datasets import (
    embedding_dataset,
    embedding_dataset_from_shards,
    refinement_dataset,
    refinement_dataset_from_shards,
    segmentation_dataset,
    segmentation_dataset_from_shards,
)
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.errors import DataError
from conceptmask_tf.training import embedding, fit
from conceptmask_tf.training.config import (
    EmbeddingConfig,
    RefinementConfig,
    SegmentationConfig,
)
from conceptmask_tf.training.shard_writer import write_stage_shards
from conceptmask_tf.training.stage import concepts_fingerprint
from tests.trained_world import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = {"embedding": EmbeddingConfig, "refinement": RefinementConfig,
           "segmentation": SegmentationConfig}


def _batches(dataset) -> list:
    return [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in dataset]


@pytest.fixture(scope="module")
def written(world, tmp_path_factory):
    """Each stage's shards of the tiny world, in record order (3 files each)."""
    out = tmp_path_factory.mktemp("stage_shards")
    return {stage: write_stage_shards(tiny_config(cls, world, f"unused_{stage}"),
                                      str(out / stage), num_shards=3, shuffle_seed=None,
                                      show_progress=False)
            for stage, cls in CONFIGS.items()}


def test_each_stages_shards_hold_exactly_the_examples_it_reads_from_the_data_root(
        world, written):
    concepts = load_training_concepts(world.root, world.concepts_dir)
    options = {"batch_size": 8, "training": False}
    for stage, cls in CONFIGS.items():
        config = tiny_config(cls, world, f"unused_{stage}")
        shards = written[stage].shards
        assert shards.metadata["concepts"] == concepts_fingerprint(concepts)
        if stage == "embedding":
            examples, num = embedding.EmbeddingStage().read_examples(config, concepts,
                                                                     SkipCounter())
            want = embedding_dataset(world.root, examples.paths, examples.targets,
                                     image_size=32, tag_rows=examples.tag_rows, **options)
            got = embedding_dataset_from_shards(shards, image_size=32, with_tags=True,
                                                skips=SkipCounter(), **options)
        elif stage == "refinement":
            from conceptmask_tf.training.refinement import RefinementStage
            examples, num = RefinementStage().read_examples(config, concepts, SkipCounter())
            sizes = {"image_size": 32, "mask_size": 4, "max_concepts": 6}
            want = refinement_dataset(world.root, examples.boxed, examples.index, **sizes,
                                      **options)
            got = refinement_dataset_from_shards(shards, skips=SkipCounter(), **sizes,
                                                 **options)
            assert shards.metadata["index"] == examples.index
        else:
            from conceptmask_tf.training.segmentation import SegmentationStage
            examples, num = SegmentationStage().read_examples(config, concepts, SkipCounter())
            want = segmentation_dataset(world.root, examples.masked, examples.index,
                                        image_size=32, **options)
            got = segmentation_dataset_from_shards(shards, image_size=32, skips=SkipCounter(),
                                                   **options)
        assert shards.num_examples == num > 0, stage
        got, want = _batches(got), _batches(want)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            for a, b in zip(tf.nest.flatten(g), tf.nest.flatten(w)):
                np.testing.assert_array_equal(a, b, err_msg=stage)


@pytest.mark.slow
def test_stage1_trains_from_shards_and_reports_them(world, written, tmp_path):
    shards = written["embedding"].shards
    config = tiny_config(EmbeddingConfig, world, str(tmp_path / "from_shards"),
                         shards=shards.directory, epochs=1, steps=3, summary_images=0,
                         keep_checkpoints=0)
    result = embedding.train(config)
    assert result.steps == 3 and np.isfinite(result.history["loss"][-1])
    saved = json.loads((tmp_path / "from_shards" / "config.json").read_text())
    assert saved["config"]["shards"] == shards.directory
    assert saved["runtime"]["num_examples"] == shards.num_examples


def test_shards_of_other_concepts_or_another_stage_are_refused(world, written, tmp_path):
    shards = written["embedding"].shards
    index_path = os.path.join(shards.directory, shard_files.INDEX_FILE)
    original = pathlib.Path(index_path).read_text()
    index = json.loads(original)
    index["metadata"]["concepts"] = "0" * 64
    try:
        pathlib.Path(index_path).write_text(json.dumps(index))
        config = tiny_config(EmbeddingConfig, world, str(tmp_path / "m"),
                             shards=shards.directory)
        with pytest.raises(DataError, match="written with other concepts"):
            embedding.train(config)
    finally:
        pathlib.Path(index_path).write_text(original)
    config = tiny_config(EmbeddingConfig, world, str(tmp_path / "m2"),
                         shards=written["refinement"].shards.directory)
    with pytest.raises(DataError, match="refinement examples, not embedding"):
        embedding.train(config)
    with pytest.raises(ValueError, match="cache_attention.*shards"):
        tiny_config(SegmentationConfig, world, "m3", shards="x", cache_attention=True)
    with pytest.raises(DataError, match="no tags field"):  # written with the tag loss off
        embedding_dataset_from_shards(
            write_stage_shards(tiny_config(EmbeddingConfig, world, "m4", tag_loss_weight=0.0),
                               str(tmp_path / "no_tags"), num_shards=1,
                               show_progress=False).shards,
            image_size=32, batch_size=2, training=False, with_tags=True, skips=SkipCounter())


def test_every_multi_worker_process_gets_its_own_input_pipeline():
    class TwoWorkers(tf.distribute.MultiWorkerMirroredStrategy):
        def __init__(self, resolver):  # no cluster is started
            self._resolver = resolver

        @property
        def cluster_resolver(self):
            return self._resolver

    spec = tf.train.ClusterSpec({"chief": ["localhost:1"], "worker": ["localhost:2",
                                                                      "localhost:3"]})
    got = [fit.input_pipelines(TwoWorkers(tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type=task, task_id=i))) for task, i in
        [("chief", 0), ("worker", 0), ("worker", 1)]]
    assert got == [(3, 0), (3, 1), (3, 2)]
    assert fit.input_pipelines(tf.distribute.get_strategy()) == (1, 0)


@pytest.mark.slow
def test_the_shards_binary_writes_a_stage_and_names_a_missing_stage(world, tmp_path):
    out = tmp_path / "segmentation_shards"
    args = [sys.executable, "-m", "conceptmask_tf.bin.shards", "segmentation",
            f"--flagfile={ROOT / 'flags' / 'world_stage3.cfg'}", f"--data_root={world.root}",
            f"--concepts_dir={world.concepts_dir}", f"--output_dir={out}", "--num_shards=2",
            "--nocache_attention"]
    child = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300,
                           check=False)
    assert child.returncode == 0, child.stderr[-3000:]
    shards = shard_files.ShardSet.load(str(out), "segmentation")
    assert f"wrote {shards.num_examples} segmentation examples" in child.stdout
    assert f"--shards={out}" in child.stdout and len(shards.files) == 2
    child = subprocess.run(args[:3] + args[4:], capture_output=True, text=True, cwd=ROOT,
                           timeout=300, check=False)
    assert child.returncode == 2 and "usage: conceptmask-shards {embedding," in child.stderr


@pytest.mark.slow
def test_stages_2_and_3_train_from_shards_with_the_facts_of_their_examples(
        world, written, stage2, tmp_path):
    from conceptmask_tf.training import refinement, segmentation

    for stage, cls, train in (("refinement", RefinementConfig, refinement.train),
                              ("segmentation", SegmentationConfig, segmentation.train)):
        shards = written[stage].shards
        config = tiny_config(cls, world, str(tmp_path / stage), shards=shards.directory,
                             epochs=1, steps=2, summary_images=1, keep_checkpoints=0)
        result = train(config)
        assert result.steps == 2 and np.isfinite(result.history["loss"][-1]), stage
        runtime = json.loads((tmp_path / stage / "config.json").read_text())["runtime"]
        assert runtime["num_examples"] == shards.num_examples
        assert runtime["target_concepts"] == sorted(shards.metadata["index"])
        if stage == "refinement":
            assert runtime["labelled_images"] == shards.metadata["facts"]["labelled_images"]
