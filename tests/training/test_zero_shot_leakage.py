"""No training target of any stage contains a zero-shot word (DESIGN.md §3).

A copy of the tiny world whose trained splits hold concepts made of a zero-shot word: a
strong object renamed "<zero-shot> <object>" (boxes and masks), a weak_box concept renamed
"<concept> <zero-shot>" (boxes) and a tags-only weak_image phrase "small <zero-shot phrase>"
(a multi-word zero-shot concept inside it). Every target set the stages build is inspected,
without training a network except one stage-1 step (for its config.json and summary).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import glob
import json
import os
import shutil
import types
from typing import Any

import numpy as np
import pytest

from conceptmask_tf.assembly import calibration
from conceptmask_tf.assembly.stage_networks import supervised_concepts
from conceptmask_tf.concepts.build import OVERLAP_FILE, build_concepts
from conceptmask_tf.concepts.concept_sets import (
    HELD_OUT_FACT,
    ZERO_SHOT_FACT,
    contains_concept,
    load_training_concepts,
    soft_topic_targets,
)
from conceptmask_tf.concepts.overlap import OverlapMatrix
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.tags import read_tag_corpus
from conceptmask_tf.training import embedding
from conceptmask_tf.training.config import EmbeddingConfig, RefinementConfig, SegmentationConfig
from conceptmask_tf.training.refinement import box_targets, build_trainer, spatial_gamma
from conceptmask_tf.training.segmentation import mask_targets
from tests.trained_world import WORD_DIM, World, tiny_config


@dataclasses.dataclass(frozen=True)
class LeakyWorld:
    world: World
    zero_shot: tuple[str, ...]
    strong: str  # a strong concept containing a zero-shot word (boxes and masks)
    weak_box: str  # a weak_box one (boxes)
    weak_image: str  # a weak_image phrase containing a multi-word zero-shot concept (tags)

    @property
    def held_out(self) -> set[str]:
        return {self.strong, self.weak_box, self.weak_image}


def _leaks(concept: str, zero_shot) -> bool:
    """The rule, pairwise: the concept is zero-shot or contains a zero-shot concept."""
    return any(contains_concept(concept, z) for z in zero_shot)


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


def _rename(root: str, old: str, new: str) -> None:
    """Renames a concept in every file of a world data root that names it."""
    lines = []
    with open(os.path.join(root, "tags.jsonl"), encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            record["tags"] = [new if t == old else t for t in record["tags"]]
            lines.append(json.dumps(record) + "\n")
    with open(os.path.join(root, "tags.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(lines)
    path = os.path.join(root, "splits.json")
    _write_json(path, {k: [new if c == old else c for c in v]
                       for k, v in _read_json(path).items()})
    for path in [os.path.join(root, "coco", "instances_train.json"),
                 *glob.glob(os.path.join(root, "val", "*.json")),
                 *glob.glob(os.path.join(root, "eval", "*.json"))]:
        data = _read_json(path)
        for category in data["categories"]:
            if category["name"] == old:
                category["name"] = new
        _write_json(path, data)
    path = os.path.join(root, "boxes", "oi_class_descriptions.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [[mid, new.capitalize() if name.lower() == old else name]
                for mid, name in csv.reader(f)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    path = os.path.join(root, "boxes", "vg_objects.json")
    images = _read_json(path)
    for image in images:
        for obj in image["objects"]:
            obj["names"] = [new if n == old else n for n in obj["names"]]
    _write_json(path, images)


def _add_phrase(root: str, inside: str, phrase: str) -> None:
    """Tags `phrase` wherever `inside` is tagged and lists it as weak_image."""
    path = os.path.join(root, "tags.jsonl")
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    for record in records:
        if inside in record["tags"]:
            record["tags"].append(phrase)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    path = os.path.join(root, "splits.json")
    splits = _read_json(path)
    splits["weak_image"].append(phrase)
    _write_json(path, splits)


@pytest.fixture(scope="module")
def leaky(world, tmp_path_factory) -> LeakyWorld:
    work = str(tmp_path_factory.mktemp("leaky"))
    root = os.path.join(work, "world")
    shutil.copytree(world.root, root)
    splits = _read_json(os.path.join(root, "splits.json"))
    zero_shot = splits["zero_shot"]
    words = {w for level in splits.values() for c in level if " " in c for w in c.split()}

    def first(level: str) -> str:  # a single-word concept that no phrase uses
        return next(c for c in splits[level] if " " not in c and c not in words)

    word = next(z for z in zero_shot if " " not in z)
    with open(os.path.join(root, "tags.jsonl"), encoding="utf-8") as f:
        tagged = collections.Counter(t for line in f for t in json.loads(line)["tags"])
    phrase = max((z for z in zero_shot if " " in z), key=tagged.__getitem__)  # "yellow ball"
    assert tagged[phrase]
    strong, weak_box = first("strong"), first("weak_box")
    leaky_world = LeakyWorld(World(root, os.path.join(work, "concepts"), work), tuple(zero_shot),
                             f"{word} {strong}", f"{weak_box} {word}", f"small {phrase}")
    _rename(root, strong, leaky_world.strong)
    _rename(root, weak_box, leaky_world.weak_box)
    _add_phrase(root, phrase, leaky_world.weak_image)
    build_concepts(os.path.join(root, "tags.jsonl"), leaky_world.world.concepts_dir, WORD_DIM,
                   data_root=root, overlap_source="both")
    return leaky_world


@pytest.fixture(scope="module")
def concepts(leaky):
    return load_training_concepts(leaky.world.root, leaky.world.concepts_dir)


def test_the_leaky_concepts_are_held_out(leaky, concepts):
    vocabulary = concepts.embeddings.vocabulary
    assert leaky.held_out <= set(vocabulary.concepts)  # they have word vectors
    assert concepts.zero_shot == set(leaky.zero_shot)
    assert concepts.held_out == leaky.held_out
    assert concepts.excluded == concepts.zero_shot | leaky.held_out
    assert concepts.exclusion_facts() == {ZERO_SHOT_FACT: sorted(leaky.zero_shot),
                                          HELD_OUT_FACT: sorted(leaky.held_out)}
    rows = set(concepts.excluded_rows().tolist())
    assert rows == {vocabulary.index(c) for c in concepts.excluded if c in vocabulary}
    assert {vocabulary.index(c) for c in leaky.held_out} <= rows


def test_stage1_soft_topic_targets_give_held_out_tags_no_weight(leaky, concepts):
    corpus = read_tag_corpus(os.path.join(leaky.world.root, "tags.jsonl"), with_images=True)
    paths, targets = soft_topic_targets(corpus, concepts, SkipCounter())
    by_path = dict(zip(paths, targets))
    tagged = 0
    for n in range(corpus.num_images):
        tags = corpus.tags_of(n)
        tagged += bool(set(tags) & leaky.held_out)
        kept = [t for t in tags if not _leaks(t, leaky.zero_shot)]
        if kept:
            np.testing.assert_allclose(by_path[str(corpus.images[n])],
                                       concepts.embeddings.soft_topic(kept), rtol=1e-5,
                                       atol=1e-6)
        else:
            assert str(corpus.images[n]) not in by_path
    assert tagged  # the held-out tags are there, and got no weight
    # Changing the held-out word vectors changes no target.
    vectors = concepts.embeddings.vectors
    rows = [concepts.embeddings.vocabulary.index(c) for c in leaky.held_out]
    original = vectors[rows].copy()
    try:
        vectors[rows] = 100.0
        _, moved = soft_topic_targets(corpus, concepts, SkipCounter())
    finally:
        vectors[rows] = original
    np.testing.assert_array_equal(moved, targets)


def test_stage2_box_targets_have_no_zero_shot_word(leaky, concepts):
    config = tiny_config(RefinementConfig, leaky.world, "unused_stage2")
    boxed, index = box_targets(config, concepts, SkipCounter())
    annotated = {c for image in boxed for c in image.concepts}
    assert {leaky.strong, leaky.weak_box} <= annotated  # they have boxes, yet are no target
    assert index and not [c for c in index if _leaks(c, leaky.zero_shot)]
    rows = set(concepts.excluded_rows().tolist())
    assert not rows & set(index.values())


def test_stage3_mask_targets_have_no_zero_shot_word(leaky, concepts):
    config = tiny_config(SegmentationConfig, leaky.world, "unused_stage3")
    masked, index = mask_targets(config, concepts, SkipCounter())
    assert leaky.strong in {m.concept for image in masked for m in image.masks}
    assert index and not [c for c in index if _leaks(c, leaky.zero_shot)]


def test_spatial_discrimination_rows_drop_held_out_concepts(leaky, concepts):
    _, rows = spatial_gamma(leaky.world.concepts_dir, concepts)
    overlap = OverlapMatrix.load(os.path.join(leaky.world.concepts_dir, OVERLAP_FILE))
    assert {leaky.strong, leaky.weak_box} <= set(overlap.concepts)
    vocabulary = concepts.embeddings.vocabulary
    for concept, row in zip(overlap.concepts, rows):
        if _leaks(concept, leaky.zero_shot):
            assert row == -1, concept
        elif row >= 0:
            assert vocabulary.concepts[row] == concept


@pytest.fixture(scope="module")
def leaky_stage1(leaky):
    # One optimizer step: enough for a stage-1 model dir, its config.json and summary.
    config = tiny_config(EmbeddingConfig, leaky.world, "leaky_stage1", epochs=1, steps=1,
                         keep_checkpoints=0, summary_images=0)
    return embedding.train(config)


@pytest.mark.slow
def test_stage1_facts_and_summary_name_the_held_out_concepts(leaky, leaky_stage1):
    with open(os.path.join(leaky_stage1.config.model_dir, "config.json")) as f:
        runtime = json.load(f)["runtime"]
    assert runtime[HELD_OUT_FACT] == sorted(leaky.held_out)
    assert runtime[ZERO_SHOT_FACT] == sorted(leaky.zero_shot)
    summary = leaky_stage1.summary()
    assert "3 concepts containing a zero-shot word" in summary
    assert all(c in summary for c in leaky.held_out)


def test_stage2_matching_and_spatial_candidates_have_no_zero_shot_word(leaky, concepts,
                                                                      leaky_stage1):
    config = tiny_config(RefinementConfig, leaky.world, "unused_stage2",
                         embedding_model_dir=leaky_stage1.config.model_dir)
    trainer = build_trainer(config, concepts)
    names = concepts.embeddings.vocabulary.concepts
    matching = [names[r] for r in trainer._matching_rows]
    spatial = [names[r] for r in trainer.spatial_loss.candidate_ids]
    assert matching and spatial
    assert not [c for c in matching + spatial if _leaks(c, leaky.zero_shot)]
    # Everything else in the vocabulary stays a matching candidate.
    assert set(matching) == set(names) - concepts.excluded


def _variants(tmp_path, runtime: dict) -> Any:
    """What `supervised_concepts` reads of a `StageNetworks`: the refinement model dir."""
    refinement = tmp_path / "refinement"
    refinement.mkdir(parents=True)
    (refinement / "config.json").write_text(json.dumps({"stage": "refinement",
                                                        "runtime": runtime}))
    return types.SimpleNamespace(model_dirs={"refinement": str(refinement)})


def test_weak_blend_supervised_set_from_splits_drops_held_out(leaky, concepts, tmp_path):
    kept, source = supervised_concepts(_variants(tmp_path, {}), leaky.world.root,
                                       concepts.embeddings)
    assert source == "splits.json" and kept
    assert not [c for c in kept if _leaks(c, leaky.zero_shot)]
    splits = concepts.splits
    assert set(kept) == {c for c in (*splits["strong"], *splits["weak_box"])
                         if c in concepts.embeddings} - leaky.held_out


class _FakeConceptMask:
    """Stands in for a ConceptMask in `calibrate_model`: records the vectors it scores."""

    num_supervised = 0

    def __init__(self) -> None:
        self.weak_theta = 1.0
        self.seen: list[np.ndarray] = []
        self.presence_score = self
        self.calibration = None
        self._rng = np.random.default_rng(0)

    def set_calibration(self, threshold: float, scale: float) -> None:
        self.calibration = (threshold, scale)

    def set_weak_theta(self, theta: float) -> None:
        self.weak_theta = theta

    def __call__(self, inputs: dict, training: bool = False) -> dict:
        vectors = inputs["word_vectors"]  # [1, K, D]
        self.seen.extend(vectors[0])
        size = inputs["image"].shape[1]
        k = vectors.shape[1]
        return {"similarity": self._rng.uniform(-1, 1, (1, k)),
                "mask_probs": self._rng.uniform(0, 1, (1, k, size, size))}


def test_calibration_skips_pairs_of_held_out_concepts(leaky, concepts):
    splits = ("strong", "weak_box", "weak_image")
    # The pair filter: no batch holds an excluded concept; the held-out ones are counted.
    counted = {}
    for split in splits:
        split_pass = calibration._SplitPass(leaky.world.root, split, concepts.embeddings,
                                            None, concepts.excluded)
        for _, _, names, _, _ in split_pass.batches():
            assert not [c for c in names if _leaks(c, leaky.zero_shot)]
        counted.update(split_pass.held_out)
    assert {leaky.strong, leaky.weak_box} <= set(counted)
    # calibrate_model reports them, and never scores their vectors.
    model = _FakeConceptMask()
    result = calibration.calibrate_model(model, leaky.world.root, leaky.world.concepts_dir,
                                         splits=splits, predict=model)
    assert result["held_out_concepts"] == counted
    assert model.calibration is not None
    held_out_vectors = concepts.embeddings.vectors[
        [concepts.embeddings.vocabulary.index(c) for c in leaky.held_out]]
    seen = np.asarray(model.seen)
    assert not np.any(np.all(np.isclose(seen[:, None], held_out_vectors[None]), axis=-1))
