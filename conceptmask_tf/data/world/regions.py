"""Concept regions of a rendered scene: masks, areas and per-instance boxes.

Definitions (the ground truth of every file the world writes):

* object: union of the visible pixels of its instances;
* part: union of the visible pixels of its instances (always inside their object's mask);
* stuff: background pixels of its regions not covered by an object;
* attribute: union of the visible pixels of the objects that have it;
* phrase ("red car"): attribute mask AND object mask;
* context tags have no region.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from conceptmask_tf.data.world.ontology import Concept, Ontology, phrase_name
from conceptmask_tf.data.world.scene import ObjectInstance, RenderedScene


@dataclasses.dataclass(frozen=True)
class InstanceBox:
    """The visible extent of one instance (object, part instance or stuff region).

    Attributes:
        concept: Its concept.
        kind: "object", "part" or "stuff".
        index: Its index among the scene's objects, parts or stuff regions.
        x0: First visible column.
        y0: First visible row.
        x1: Last visible column (inclusive).
        y1: Last visible row (inclusive).
        area: Visible pixels.
        occluded: Whether something covers part of it.
    """

    concept: str
    kind: str
    index: int
    x0: int
    y0: int
    x1: int
    y1: int
    area: int
    occluded: bool


def concept_mask(scene: RenderedScene, concept: Concept) -> np.ndarray:
    """[S, S] bool mask of a concept in a scene (all instances merged).

    Raises:
        ValueError: for a context tag (no region).
    """
    merged = np.zeros(scene.object_map.shape, bool)
    for mask in instance_masks(scene, concept):
        merged |= mask
    return merged


def instance_masks(scene: RenderedScene, concept: Concept) -> list[np.ndarray]:
    """[S, S] bool masks of the visible instances of a concept, one per instance.

    Instances: objects of the class (object), part instances (part), stuff regions (stuff),
    objects having the attribute (attribute, phrase). Their union is `concept_mask`;
    instances with no visible pixel are left out.

    Raises:
        ValueError: for a context tag (no region).
    """
    keep = object_filter(concept)
    if keep is not None:
        masks = [scene.object_map == i for i, o in enumerate(scene.objects) if keep(o)]
    elif concept.type == "part":
        masks = [scene.part_map == i for i, p in enumerate(scene.parts)
                 if p.concept == concept.name]
    elif concept.type == "stuff":
        masks = [(scene.stuff_map == i) & (scene.object_map < 0)
                 for i, s in enumerate(scene.stuff) if s == concept.name]
    else:
        raise ValueError(f"concept {concept.name!r} ({concept.type}) has no region")
    return [m for m in masks if m.any()]


def concept_areas(scene: RenderedScene, ontology: Ontology) -> dict[str, int]:
    """Visible area in pixels of every region concept of the ontology present in the scene."""
    areas: collections.Counter = collections.Counter()
    object_area, part_area, stuff_area = _areas(scene)
    for i, obj in enumerate(scene.objects):
        areas[obj.concept] += object_area[i]
        for attribute in obj.attributes:
            areas[attribute] += object_area[i]
            areas[phrase_name(attribute, obj.concept)] += object_area[i]
    for i, part in enumerate(scene.parts):
        areas[part.concept] += part_area[i]
    for i, stuff in enumerate(scene.stuff):
        areas[stuff] += stuff_area[i]
    return {c.name: int(areas[c.name]) for c in ontology.region_concepts if areas[c.name] > 0}


def instance_boxes(scene: RenderedScene) -> list[InstanceBox]:
    """Boxes of every visible object, part instance and stuff region, in that order."""
    object_area, part_area, stuff_area = _areas(scene)
    visible_stuff = np.where(scene.object_map < 0, scene.stuff_map, -1)
    out = []
    for kind, names, label_map, areas in (
            ("object", [o.concept for o in scene.objects], scene.object_map, object_area),
            ("part", [p.concept for p in scene.parts], scene.part_map, part_area),
            ("stuff", list(scene.stuff), visible_stuff, stuff_area)):
        slices = ndimage.find_objects(label_map.astype(np.int32) + 1, max_label=len(names))
        for i, where in enumerate(slices):
            if where is None:
                continue
            if kind == "object":
                occluded = areas[i] < scene.objects[i].drawn_area
            elif kind == "stuff":
                occluded = areas[i] < int((scene.stuff_map == i).sum())
            else:  # parts: occluded when their object is
                owner = scene.parts[i].owner
                occluded = object_area[owner] < scene.objects[owner].drawn_area
            out.append(InstanceBox(names[i], kind, i, where[1].start, where[0].start,
                                   where[1].stop - 1, where[0].stop - 1, int(areas[i]),
                                   bool(occluded)))
    return out


def object_filter(concept: Concept) -> Callable[[ObjectInstance], bool] | None:
    """Which objects make up an object, attribute or phrase concept; None for other types."""
    if concept.type == "object":
        return lambda o: o.concept == concept.name
    if concept.type == "attribute":
        return lambda o: concept.name in o.attributes
    if concept.type == "phrase":
        attribute, obj = concept.words
        return lambda o: o.concept == obj and attribute in o.attributes
    return None


def _areas(scene: RenderedScene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visible pixels per object, per part instance and per stuff region."""
    objects = scene.object_map[scene.object_map >= 0]
    parts = scene.part_map[scene.part_map >= 0]
    stuff = scene.stuff_map[scene.object_map < 0]
    return (np.bincount(objects, minlength=len(scene.objects)),
            np.bincount(parts, minlength=len(scene.parts)),
            np.bincount(stuff, minlength=len(scene.stuff)))
