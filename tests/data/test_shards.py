"""Sharded TFRecords: every stage's examples round-trip exactly, workers read disjoint files,
bad images in shards are skipped and counted where read, the writer resumes."""

import collections
import json
import os
import pathlib
import uuid

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools import mask as mask_utils

from conceptmask_tf.base import files
from conceptmask_tf.data import images as image_files
from conceptmask_tf.data import shards as shard_files
from conceptmask_tf.data.datasets import (
    embedding_dataset,
    embedding_dataset_from_shards,
    embedding_elements,
    refinement_dataset,
    refinement_dataset_from_shards,
    refinement_elements,
    segmentation_dataset,
    segmentation_dataset_from_shards,
    segmentation_elements,
)
from conceptmask_tf.data.shards import ShardSet, shard_examples, write_shards
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.types import BoxedImage, ConceptBox, ConceptMask, MaskedImage
from conceptmask_tf.errors import DataError

NUM_IMAGES = 7


def _batches(dataset) -> list:
    return [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in dataset]


def _assert_same_batches(got, want) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        tf.nest.assert_same_structure(g, w)
        for a, b in zip(tf.nest.flatten(g), tf.nest.flatten(w)):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    """Seven images of different sizes and contents (PNG and JPEG)."""
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    os.makedirs(root / "images")
    for i in range(NUM_IMAGES):
        pixels = rng.integers(0, 256, (12 + i, 16 + 2 * i, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{i}.{'png' if i % 2 else 'jpg'}")
    return str(root)


def _image(i: int) -> str:
    return f"images/{i}.{'png' if i % 2 else 'jpg'}"


def _embedding(root):
    paths = [_image(i) for i in range(NUM_IMAGES)]
    targets = np.random.default_rng(1).normal(size=(NUM_IMAGES, 5)).astype(np.float32)
    tags = np.array([[i, -1, 2] for i in range(NUM_IMAGES)], np.int32)
    return paths, targets, tags


def _boxed():
    index = {"cat": 0, "dog": 3, "sky": 7}
    images = []
    for i in range(NUM_IMAGES):
        boxes = [ConceptBox("cat", 0.1, 0.1, 0.5, 0.6), ConceptBox("sky", 0.0, 0.0, 1.0, 0.3)]
        boxes += [ConceptBox("dog", 0.05 * i, 0.2, 0.9, 0.9)] * (i % 3)  # 0, 1 or 2 boxes
        if i == 2:
            boxes = [ConceptBox("unknown", 0.1, 0.1, 0.2, 0.2)]  # no known concept: dropped
        images.append(BoxedImage(_image(i), tuple(boxes), 16 + 2 * i, 12 + i))
    labels = {_image(i): (np.arange(i % 4, dtype=np.int32),
                          np.array([1.0, 0.0, 1.0][:i % 4], np.float32))
              for i in range(NUM_IMAGES) if i != 5}
    return images, index, labels


def _masked():
    images = []
    for i in range(NUM_IMAGES):
        height, width = 12 + i, 16 + 2 * i
        mask = np.zeros((height, width), np.uint8)
        mask[2:8, 3:3 + i + 2] = 1
        crowd = np.zeros_like(mask)
        crowd[0, :4] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        masks = [ConceptMask("cat", rle, mask_utils.encode(np.asfortranarray(crowd))
                             if i % 2 else None)]
        if i % 3 == 0:
            masks.append(ConceptMask("dog", mask_utils.encode(np.asfortranarray(1 - mask))))
        images.append(MaskedImage(_image(i), width, height, tuple(masks)))
    return images, {"cat": 1, "dog": 4}


def _write(elements, directory, **kwargs) -> ShardSet:
    options = {"stage": "stage", "num_shards": 3, "shuffle_seed": None,
               "show_progress": False, **kwargs}
    return write_shards(str(directory), elements, **options)


def test_shard_records_give_back_every_field_of_every_row_exactly(root, tmp_path):
    images, index, labels = _boxed()
    elements = refinement_elements(root, images, index, 2, SkipCounter(), labels)
    written = _write(elements, tmp_path / "refinement", stage="refinement")
    assert written.num_examples == NUM_IMAGES - 1  # image 2 had no known concept
    assert written.fields["boxes"] == shard_files.FieldSpec("float32", (-1, 4))
    rows = list(shard_examples(written, training=False, seed=None, shuffle_buffer=None,
                               repeat=False).as_numpy_iterator())
    assert [r["path"].decode() for r in rows] == elements["path"]
    for i, row in enumerate(rows):
        for name in ("concept_ids", "boxes", "box_slots", "label_ids", "label_present"):
            want = elements[name][i].numpy()
            assert row[name].dtype == want.dtype and row[name].shape == want.shape, name
            np.testing.assert_array_equal(row[name], want)
        with open(elements["path"][i], "rb") as f:
            np.testing.assert_array_equal(row["image"], tf.io.decode_image(f.read(), 3))


@pytest.mark.parametrize("stage", ["embedding", "refinement", "segmentation"])
def test_each_stage_reads_the_same_batches_from_shards_as_from_the_data_root(
        root, tmp_path, stage):
    options = {"batch_size": 3, "training": False}
    if stage == "embedding":
        paths, targets, tags = _embedding(root)
        want = embedding_dataset(root, paths, targets, image_size=8, tag_rows=tags, **options)
        elements = embedding_elements(root, paths, targets, tags)
        read = lambda s, skips: embedding_dataset_from_shards(
            s, image_size=8, with_tags=True, skips=skips, **options)
    elif stage == "refinement":
        images, index, labels = _boxed()
        want = refinement_dataset(root, images, index, image_size=8, mask_size=4,
                                  max_concepts=2, image_labels=labels, max_labels=2, **options)
        elements = refinement_elements(root, images, index, 2, SkipCounter(), labels)
        read = lambda s, skips: refinement_dataset_from_shards(
            s, image_size=8, mask_size=4, max_concepts=2, with_labels=True, max_labels=2,
            skips=skips, **options)
    else:
        images, index = _masked()
        want = segmentation_dataset(root, images, index, image_size=8, **options)
        elements = segmentation_elements(root, images, index, SkipCounter())
        read = lambda s, skips: segmentation_dataset_from_shards(
            s, image_size=8, skips=skips, **options)
    written = _write(elements, tmp_path / stage, stage=stage)
    _assert_same_batches(_batches(read(written, SkipCounter())), _batches(want))


def test_shuffled_shards_hold_the_same_examples_and_training_reads_them_all(root, tmp_path):
    paths, targets, _ = _embedding(root)
    written = _write(embedding_elements(root, paths, targets), tmp_path / "e",
                     stage="embedding", shuffle_seed=3)
    rows = list(shard_examples(written, training=False, seed=None, shuffle_buffer=None,
                               repeat=False).as_numpy_iterator())
    order = [int(os.path.basename(r["path"]).split(b".")[0]) for r in rows]
    assert sorted(order) == list(range(NUM_IMAGES)) and order != sorted(order)
    np.testing.assert_array_equal(np.stack([r["target"] for r in rows]), targets[order])

    def epoch(seed):
        dataset = embedding_dataset_from_shards(
            written, image_size=8, batch_size=NUM_IMAGES, training=True, seed=seed,
            skips=SkipCounter(), shuffle_buffer=2, repeat=True, flip=False)
        return [tuple(map(tuple, t)) for _, t in dataset.take(3).as_numpy_iterator()]

    first = epoch(0)
    assert first == epoch(0)  # seeded: repeatable
    # Records are shuffled in a buffer of 2 across passes: the first 21 outputs are the
    # first 23 records of the repeated stream but 2, so each example comes 2 to 4 times.
    counts = collections.Counter(row for batch in first for row in batch)
    assert set(counts) == set(map(tuple, targets.tolist()))
    assert all(2 <= n <= 4 for n in counts.values())
    assert first[0] != tuple(map(tuple, targets[order].tolist()))  # not the written order


def test_two_workers_read_disjoint_files_that_cover_every_example(root, tmp_path):
    paths, targets, _ = _embedding(root)
    written = _write(embedding_elements(root, paths, targets), tmp_path / "e",
                     stage="embedding", num_shards=4, shuffle_seed=0)
    seen = []
    for worker in range(2):
        rows = shard_examples(written, training=True, seed=0, shuffle_buffer=4, repeat=False,
                              input_pipelines=(2, worker))
        seen.append(sorted(r["path"] for r in rows.as_numpy_iterator()))
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(p.encode() for p in
                                               embedding_elements(root, paths, targets)["path"])
    assert len(seen[0]) == sum(written.counts[0::2])  # files 0 and 2 go to worker 0
    with pytest.raises(ValueError, match="4 shard file.*cannot be split over 5 workers"):
        shard_examples(written, training=True, seed=0, shuffle_buffer=4, repeat=False,
                       input_pipelines=(5, 0))


def test_the_writer_leaves_out_bad_images_and_counts_them_once_per_file(root, tmp_path):
    data = tmp_path / "data"
    os.makedirs(data / "images")
    for i in range(NUM_IMAGES):
        with open(os.path.join(root, _image(i)), "rb") as src:
            content = src.read()
        if i == 4:  # headers and end marker intact, compressed data corrupt
            content = content[:200] + bytes(len(content) - 202) + content[-2:]
        with open(data / _image(i), "wb") as dst:
            dst.write(content)
    os.remove(data / _image(1))
    images, index = _masked()  # images 0, 3 and 6 have two masks: two examples each
    skips = SkipCounter()
    elements = segmentation_elements(str(data), images, index, skips)
    written = _write(elements, tmp_path / "s", stage="segmentation", skips=skips)
    assert written.num_records == NUM_IMAGES + 3
    assert written.num_examples == NUM_IMAGES + 3 - 2  # images 1 and 4: one mask each
    assert written.num_images == NUM_IMAGES - 2
    assert written.skip_counter().as_dict() == {image_files.MISSING: 1,
                                                image_files.TRUNCATED: 1}
    assert any(_image(4) in e for e in written.skip_counter().examples[image_files.TRUNCATED])
    got = _batches(segmentation_dataset_from_shards(written, image_size=8, batch_size=20,
                                                    training=False, skips=SkipCounter()))
    good = [MaskedImage(m.image, m.width, m.height, m.masks) for i, m in enumerate(images)
            if i not in (1, 4)]
    want = _batches(segmentation_dataset(root, good, index, image_size=8, batch_size=20,
                                         training=False))
    _assert_same_batches(got, want)


def test_a_run_from_shards_counts_the_writers_bad_images_against_the_limit(root, tmp_path):
    from conceptmask_tf.training.stage import Stage

    data = tmp_path / "data"
    os.makedirs(data / "images")
    for i in (0, 2, 3):
        with open(os.path.join(root, _image(i)), "rb") as src, open(data / _image(i),
                                                                    "wb") as dst:
            dst.write(src.read())
    paths, targets, _ = _embedding(root)
    written = _write(embedding_elements(str(data), paths, targets), tmp_path / "e",
                     stage="embedding")
    assert (written.num_records, written.num_examples) == (NUM_IMAGES, 3)

    class Embedding(Stage):  # the skeleton's shard reading, nothing else
        shard_stage = "embedding"
        read_examples = build = dataset = None

    config = type("Config", (), {"shards": written.directory, "concepts_dir": ""})()
    skips = SkipCounter()
    _, num_records = Embedding().read_shards(config, None, skips)
    assert num_records == NUM_IMAGES and skips.as_dict() == {image_files.MISSING: 4}
    with pytest.raises(DataError, match="4 of 7 training records"):
        skips.check_bad_fraction(num_records, 0.5)


def test_the_writer_resumes_a_plan_and_refuses_another_one(root, tmp_path, monkeypatch):
    paths, targets, _ = _embedding(root)
    elements = embedding_elements(root, paths, targets)
    directory = tmp_path / "e"
    first = _write(elements, directory, stage="embedding")
    os.remove(os.path.join(first.directory, first.files[1]))
    os.remove(os.path.join(first.directory, shard_files.INDEX_FILE))
    with pytest.raises(FileNotFoundError, match="did not finish.*resume"):
        ShardSet.load(str(directory))
    written_records = []
    original = shard_files._example
    monkeypatch.setattr(shard_files, "_example",
                        lambda path, *a: written_records.append(path) or original(path, *a))
    again = _write(elements, directory, stage="embedding")
    assert len(written_records) == first.counts[1]  # only the missing file was written
    assert again == first
    with pytest.raises(DataError, match="another plan"):
        _write(elements, directory, stage="embedding", num_shards=2)
    assert _write(elements, directory, stage="embedding", num_shards=2,
                  overwrite=True).files == ("embedding-00000-of-00002.tfrecord",
                                            "embedding-00001-of-00002.tfrecord")


def test_loading_names_what_is_wrong_with_a_shard_folder(root, tmp_path):
    paths, targets, _ = _embedding(root)
    written = _write(embedding_elements(root, paths, targets), tmp_path / "e",
                     stage="embedding")
    with pytest.raises(FileNotFoundError, match="shards.json is missing"):
        ShardSet.load(str(tmp_path / "nothing"))
    with pytest.raises(DataError, match="embedding examples, not segmentation"):
        ShardSet.load(written.directory, "segmentation")
    with pytest.raises(DataError, match="not refinement"):
        refinement_dataset_from_shards(written, image_size=8, mask_size=4, max_concepts=2,
                                       batch_size=2, training=False, skips=SkipCounter())
    with pytest.raises(DataError, match="no tags field"):
        embedding_dataset_from_shards(written, image_size=8, batch_size=2, training=False,
                                      with_tags=True, skips=SkipCounter())
    index_path = pathlib.Path(written.directory, shard_files.INDEX_FILE)
    index = json.loads(index_path.read_text())
    index_path.write_text(json.dumps({**index, "counts": [1]}))
    with pytest.raises(DataError, match="malformed shard index"):
        ShardSet.load(written.directory)
    index_path.write_text(json.dumps(index))
    os.remove(os.path.join(written.directory, written.files[0]))
    with pytest.raises(FileNotFoundError, match="1 shard file.*missing"):
        ShardSet.load(written.directory)


def test_write_time_skips_travel_with_the_shards(root, tmp_path):
    images, _ = _masked()
    skips = SkipCounter()
    elements = segmentation_elements(root, images, {"cat": 1}, skips)  # dog masks dropped
    written = _write(elements, tmp_path / "s", stage="segmentation", skips=skips,
                     metadata={"index": {"cat": 1}})
    assert written.skip_counter().as_dict() == skips.as_dict() != {}
    assert written.metadata == {"index": {"cat": 1}}
    assert written.num_images == NUM_IMAGES and written.num_examples == NUM_IMAGES


def test_shards_are_written_and_read_on_a_non_local_filesystem(root):
    paths, targets, tags = _embedding(root)
    directory = f"ram://shards-{uuid.uuid4().hex[:8]}/embedding"
    try:
        written = write_shards(directory, embedding_elements(root, paths, targets, tags),
                               stage="embedding", num_shards=2, shuffle_seed=None,
                               show_progress=False)
        got = _batches(embedding_dataset_from_shards(
            ShardSet.load(directory), image_size=8, batch_size=4, training=False,
            with_tags=True, skips=SkipCounter()))
        want = _batches(embedding_dataset(root, paths, targets, image_size=8, batch_size=4,
                                          training=False, tag_rows=tags))
        _assert_same_batches(got, want)
        assert written.directory == directory
    finally:
        files.rmtree(os.path.dirname(directory), ignore_errors=True)


def test_a_worker_whose_files_hold_no_example_is_told_so(root, tmp_path):
    data = tmp_path / "data"
    os.makedirs(data / "images")
    for i in range(4):  # images 4-6 are missing: the second file gets no example
        with open(os.path.join(root, _image(i)), "rb") as src, open(data / _image(i),
                                                                    "wb") as dst:
            dst.write(src.read())
    paths, targets, _ = _embedding(root)
    written = _write(embedding_elements(str(data), paths[:6], targets[:6]), tmp_path / "e",
                     stage="embedding", num_shards=2)
    assert written.counts == (3, 1)
    written = _write(embedding_elements(str(data), paths[:4] + paths[5:7],
                                        targets[:6]), tmp_path / "f", stage="embedding",
                     num_shards=3)
    assert written.counts == (2, 2, 0)
    assert len(list(shard_examples(written, training=True, seed=0, shuffle_buffer=2,
                                   repeat=False, input_pipelines=(2, 0)))) == 2
    with pytest.raises(DataError, match="input pipeline 2 of 3 hold no example"):
        shard_examples(written, training=True, seed=0, shuffle_buffer=2, repeat=True,
                       input_pipelines=(3, 2))
