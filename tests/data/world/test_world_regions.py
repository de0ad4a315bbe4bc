"""Rendered scenes: the region definitions hold pixel for pixel."""

import numpy as np
import pytest

from conceptmask_tf.data.world import build_ontology, concept_areas, concept_mask, sample_scene
from conceptmask_tf.data.world.regions import instance_boxes
from conceptmask_tf.data.world.scene import MIN_VISIBLE_FRACTION, requirement_for

# Every phrase candidate but two: a phrase never contains a zero-shot word, and two of the
# ten attributes are zero-shot, so at most 24 candidates can be drawn.
ONTOLOGY = build_ontology(0, num_phrases=24)
SCENES = [sample_scene(64, np.random.default_rng([9, i]), 2, 6, 4) for i in range(40)]


def _mask(scene, name):
    return concept_mask(scene, ONTOLOGY.concept(name))


@pytest.mark.parametrize("index", range(len(SCENES)))
def test_stuff_partitions_the_background(index):
    scene = SCENES[index]
    stuff = [_mask(scene, s) for s in dict.fromkeys(scene.stuff)]
    total = np.sum(stuff, axis=0)  # [S, S] how many stuff concepts claim each pixel
    background = scene.object_map < 0
    assert np.array_equal(total == 1, background)  # each background pixel: exactly one
    assert not total[~background].any()  # objects occlude stuff


@pytest.mark.parametrize("index", range(len(SCENES)))
def test_parts_lie_inside_their_objects(index):
    scene = SCENES[index]
    for p, part in enumerate(scene.parts):
        owner = scene.objects[part.owner]
        inside = scene.part_map == p
        assert not (inside & (scene.object_map != part.owner)).any()
        assert owner.concept in ONTOLOGY.concept(part.concept).parents
    for name in {p.concept for p in scene.parts}:
        parents = ONTOLOGY.concept(name).parents
        union = np.any([_mask(scene, o) for o in parents], axis=0)
        assert not (_mask(scene, name) & ~union).any()


@pytest.mark.parametrize("index", range(len(SCENES)))
def test_attributes_and_phrases(index):
    scene = SCENES[index]
    for name in ONTOLOGY.names(("attribute",)):
        # Dense reference: OR of the visible masks of the objects having the attribute.
        expected = np.zeros_like(scene.object_map, dtype=bool)
        for i, obj in enumerate(scene.objects):
            if name in obj.attributes:
                expected |= scene.object_map == i
        assert np.array_equal(_mask(scene, name), expected), name
    for phrase in ONTOLOGY.phrases:
        attribute, obj = phrase.words
        expected = _mask(scene, attribute) & _mask(scene, obj)
        assert np.array_equal(concept_mask(scene, phrase), expected), phrase.name


@pytest.mark.parametrize("index", range(len(SCENES)))
def test_areas_boxes_and_visibility(index):
    scene = SCENES[index]
    areas = concept_areas(scene, ONTOLOGY)
    for concept in ONTOLOGY.region_concepts:
        assert areas.get(concept.name, 0) == int(concept_mask(scene, concept).sum())
    for box in instance_boxes(scene):
        label = {"object": scene.object_map, "part": scene.part_map,
                 "stuff": np.where(scene.object_map < 0, scene.stuff_map, -1)}[box.kind]
        ys, xs = np.nonzero(label == box.index)
        assert (box.x0, box.y0, box.x1, box.y1) == (xs.min(), ys.min(), xs.max(), ys.max())
        assert box.area == len(xs)
    for i, obj in enumerate(scene.objects):
        visible = int((scene.object_map == i).sum())
        assert visible >= MIN_VISIBLE_FRACTION * obj.drawn_area > 0
    with pytest.raises(ValueError):
        concept_mask(scene, ONTOLOGY.concept("outdoor"))  # context tags have no region


def test_objects_come_in_very_different_sizes():
    widths = {}
    for scene in SCENES:
        for i, obj in enumerate(scene.objects):
            cols = np.nonzero((scene.object_map == i).any(axis=0))[0]
            widths.setdefault(obj.concept, []).append(cols.max() - cols.min() + 1)
    everything = np.concatenate([w for w in widths.values()])
    assert everything.max() >= 6 * everything.min()


def test_requirements_put_every_concept_in_a_scene():
    for concept in ONTOLOGY.region_concepts:
        for attempt in range(30):
            rng = np.random.default_rng([4, concept.id, attempt])
            scene = sample_scene(64, rng, 1, 3, 4, requirement_for(concept, rng))
            if concept_areas(scene, ONTOLOGY).get(concept.name, 0) >= 4:
                break
        else:
            pytest.fail(f"{concept.name} never became visible")


def test_same_generator_state_same_scene():
    a = sample_scene(64, np.random.default_rng([1, 2]), 1, 5, 4)
    b = sample_scene(64, np.random.default_rng([1, 2]), 1, 5, 4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.part_map, b.part_map)
    assert a.objects == b.objects and a.context == b.context
