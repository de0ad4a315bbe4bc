"""Scene sampling and composition: background, objects placed in depth order, lighting.

A rendered scene keeps three label maps (stuff region, object, part instance) from which
every concept's mask follows exactly (see `regions.py`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from conceptmask_tf.data.world.background import Background, make_background
from conceptmask_tf.data.world.ontology import (
    OBJECT_CLASSES,
    SCENE_TYPES,
    Concept,
    ObjectClass,
    SceneType,
    object_class,
    scene_type,
)
from conceptmask_tf.data.world.sprites import Sprite, build_sprite

MIN_VISIBLE_FRACTION = 0.5  # an object stays at least this visible behind nearer ones
MIN_INSIDE_FRACTION = 0.6  # share of an object's box inside the image
TEXTURE_PROB = 0.35
PLACEMENT_TRIES = 12
FORCED_SIZE_FLOOR = 0.4  # a required object takes its size from the top 60 % of the range


@dataclasses.dataclass(frozen=True)
class Requirement:
    """What a scene must contain (used to cover every concept in the eval sets).

    Attributes:
        stuff: A stuff concept the background must contain.
        object: An object class to place first (objects that would hide it give way).
        attribute: An attribute the required object must have.
    """

    stuff: str | None = None
    object: str | None = None
    attribute: str | None = None


@dataclasses.dataclass(frozen=True)
class ObjectInstance:
    """One placed object: its class, attributes and unoccluded area inside the image."""

    concept: str
    attributes: tuple[str, ...]
    drawn_area: int


@dataclasses.dataclass(frozen=True)
class PartInstance:
    """One part instance (e.g. the left wheel) and the index of the object it belongs to."""

    concept: str
    owner: int


@dataclasses.dataclass(frozen=True)
class RenderedScene:
    """A finished image with the label maps that define every concept's region.

    Attributes:
        image: [S, S, 3] uint8 RGB.
        scene: Scene type name.
        night: Whether it is a night scene.
        context: Context tags of the scene (text-only concepts, already sampled).
        stuff: Stuff concept of each background region.
        objects: Objects, in painting (depth) order; index = value in `object_map`.
        parts: Part instances; index = value in `part_map`.
        stuff_map: [S, S] int16 background region of every pixel (also under objects).
        object_map: [S, S] int16 visible object, -1 on background.
        part_map: [S, S] int16 visible part instance, -1 elsewhere.
    """

    image: np.ndarray
    scene: str
    night: bool
    context: tuple[str, ...]
    stuff: tuple[str, ...]
    objects: tuple[ObjectInstance, ...]
    parts: tuple[PartInstance, ...]
    stuff_map: np.ndarray
    object_map: np.ndarray
    part_map: np.ndarray

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


def requirement_for(concept: Concept, rng: np.random.Generator) -> Requirement:
    """A requirement that puts `concept` in a scene (for eval coverage).

    Raises:
        ValueError: for context tags, which have no region.
    """
    if concept.type == "object":
        return Requirement(object=concept.name)
    if concept.type == "part":
        return Requirement(object=concept.parents[rng.integers(len(concept.parents))])
    if concept.type == "stuff":
        return Requirement(stuff=concept.name)
    if concept.type == "attribute":
        owners = [c.name for c in OBJECT_CLASSES
                  if concept.name in c.colours + c.textures]
        return Requirement(object=owners[rng.integers(len(owners))], attribute=concept.name)
    if concept.type == "phrase":
        attribute, obj = concept.words
        return Requirement(object=obj, attribute=attribute)
    raise ValueError(f"concept {concept.name!r} of type {concept.type} has no region")


def sample_scene(size: int, rng: np.random.Generator, min_objects: int, max_objects: int,
                 min_pixels: int, requirement: Requirement | None = None) -> RenderedScene:
    """Samples and renders one scene.

    Args:
        size: Image side in pixels.
        rng: Random generator (the only source of randomness).
        min_objects: Fewest objects to try to place.
        max_objects: Most objects to try to place.
        min_pixels: Objects smaller than this (unoccluded) are not placed.
        requirement: Optional content the scene must have; the caller checks the result
            (a required object can still fail to fit).

    Returns:
        The RenderedScene.
    """
    req = requirement or Requirement()
    scene = _choose_scene(rng, req)
    night = bool(rng.random() < scene.night_prob)
    bg = make_background(scene, size, rng, night, req.stuff or _support_for(req, scene, rng))
    wanted: list[tuple[str, str | None, bool]] = []
    if req.object is not None:
        wanted.append((req.object, req.attribute, True))
    names = [name for name, _ in scene.objects]
    weights = np.asarray([w for _, w in scene.objects])
    for _ in range(int(rng.integers(min_objects, max_objects + 1)) - len(wanted)):
        wanted.append((names[rng.choice(len(names), p=weights / weights.sum())], None, False))
    sprites = []
    for name, attribute, forced in wanted:
        sprite = _place(object_class(name), attribute, bg, size, rng, forced)
        if sprite is not None:
            sprites.append(sprite)
    accepted = _accept(sprites, size, min_pixels)
    image, objects, parts, object_map, part_map = _paint(bg, accepted, size, rng)
    image = _finish(image, rng, night, scene.name == "indoor")
    return RenderedScene(image=image, scene=scene.name, night=night,
                         context=_context(scene, night, rng), stuff=bg.regions,
                         objects=objects, parts=parts, stuff_map=bg.labels,
                         object_map=object_map, part_map=part_map)


def _choose_scene(rng: np.random.Generator, req: Requirement) -> SceneType:
    candidates, weights = [], []
    for scene in SCENE_TYPES:
        weight = scene.weight
        if req.stuff is not None and req.stuff not in scene.stuff:
            continue
        if req.object is not None:
            weight *= dict(scene.objects).get(req.object, 0.0)
        if weight > 0:
            candidates.append(scene.name)
            weights.append(weight)
    if not candidates:
        raise ValueError(f"no scene type can satisfy {req}")
    p = np.asarray(weights) / sum(weights)
    return scene_type(candidates[rng.choice(len(candidates), p=p)])


def _support_for(req: Requirement, scene: SceneType, rng: np.random.Generator) -> str | None:
    """A stuff the required object can stand on, forced into the background (None: sky)."""
    if req.object is None:
        return None
    supports = object_class(req.object).supports
    if "sky" in supports:
        return None
    options = [s for s in supports if s in scene.stuff]
    return options[rng.integers(len(options))]


def _attributes(cls: ObjectClass, rng: np.random.Generator,
                forced: str | None) -> tuple[str, ...]:
    colour = texture = None
    if forced in cls.colours:
        colour = forced
    elif cls.colours:
        colour = cls.colours[rng.integers(len(cls.colours))]
    if forced in cls.textures:
        texture = forced
    elif cls.textures and rng.random() < TEXTURE_PROB:
        texture = cls.textures[rng.integers(len(cls.textures))]
    if forced is not None and forced not in (colour, texture):
        raise ValueError(f"{cls.name} cannot be {forced}")
    return tuple(a for a in (colour, texture) if a is not None)


def _place(cls: ObjectClass, attribute: str | None, bg: Background, size: int,
           rng: np.random.Generator, forced: bool) -> Sprite | None:
    """Finds a spot on a supporting stuff region and draws the object there (or None)."""
    supports = [s for s in cls.supports if s in bg.regions]
    if not supports:
        return None
    attributes = _attributes(cls, rng, attribute)
    lo, hi = cls.width
    if forced:
        lo += FORCED_SIZE_FLOOR * (hi - lo)
    for _ in range(PLACEMENT_TRIES):
        support = supports[rng.integers(len(supports))]
        ids = [i for i, name in enumerate(bg.regions) if name == support]
        col = int(rng.uniform(0.06, 0.94) * size)
        rows = np.nonzero(np.isin(bg.labels[:, col], ids))[0]
        if rows.size == 0:
            continue
        row = rows[rng.integers(rows.size)] + rng.random()
        width = math.exp(rng.uniform(math.log(lo), math.log(hi))) * size
        aspect = rng.uniform(*cls.aspect)
        if support == "sky":
            height = width * aspect
            top = row - height / 2
        else:  # perspective: nearer (lower) objects are bigger
            near = min(max((row - bg.horizon) / max(size - bg.horizon, 1.0), 0.0), 1.0)
            scale = 0.8 + 0.7 * near
            width *= max(scale, 0.9) if forced else scale
            height = width * aspect
            top = row - height
        left = col + rng.random() - width / 2
        if width < 3 or height < 3 or _inside_fraction(left, top, width, height,
                                                         size) < MIN_INSIDE_FRACTION:
            continue
        sprite = build_sprite(cls.name, attributes, left, top, width, height,
                              mirrored=bool(rng.random() < 0.5), image_size=size, rng=rng,
                              flying=support == "sky", snowy="snow" in bg.regions)
        if sprite is not None:
            return sprite
    return None


def _inside_fraction(left: float, top: float, width: float, height: float,
                     size: int) -> float:
    w = max(0.0, min(left + width, size) - max(left, 0.0))
    h = max(0.0, min(top + height, size) - max(top, 0.0))
    return (w * h) / (width * height)


def _accept(sprites: list[Sprite], size: int, min_pixels: int) -> list[Sprite]:
    """Greedy, in order: keeps a sprite if every kept object stays visible enough."""
    kept: list[Sprite] = []
    drawn: list[np.ndarray] = []
    for sprite in sprites:
        mask = sprite.drawn(size)
        if mask.sum() < min_pixels:
            continue
        if _visible_enough(kept + [sprite], drawn + [mask]):
            kept.append(sprite)
            drawn.append(mask)
    return kept


def _visible_enough(sprites: list[Sprite], drawn: list[np.ndarray]) -> bool:
    cover = np.zeros_like(drawn[0])
    for i in sorted(range(len(sprites)), key=lambda i: (-sprites[i].depth, -i)):
        area = drawn[i].sum()
        if (drawn[i] & ~cover).sum() < MIN_VISIBLE_FRACTION * area:
            return False
        cover |= drawn[i]
    return True


def _paint(bg: Background, sprites: list[Sprite], size: int, rng: np.random.Generator
           ) -> tuple[np.ndarray, tuple[ObjectInstance, ...], tuple[PartInstance, ...],
                      np.ndarray, np.ndarray]:
    """Paints sprites far to near; returns (rgb, objects, parts, object_map, part_map)."""
    rgb = bg.rgb.copy()
    object_map = np.full((size, size), -1, np.int16)
    part_map = np.full((size, size), -1, np.int16)
    objects: list[ObjectInstance] = []
    parts: list[PartInstance] = []
    for index in sorted(range(len(sprites)), key=lambda i: (sprites[i].depth, i)):
        sprite = sprites[index]
        obj = len(objects)
        objects.append(ObjectInstance(sprite.concept, sprite.attributes,
                                      int(sprite.drawn(size).sum())))
        window = (sprite.frame.rows, sprite.frame.cols)
        rgb_w, obj_w, part_w = rgb[window], object_map[window], part_map[window]
        part_ids: dict[tuple[str, int], int] = {}
        for comp in sprite.components:
            rgb_w[comp.mask] = comp.paint.render(sprite.frame, comp.mask, rng)
            obj_w[comp.mask] = obj
            if comp.part is None:
                part_w[comp.mask] = -1
                continue
            if (comp.part, comp.key) not in part_ids:
                part_ids[(comp.part, comp.key)] = len(parts)
                parts.append(PartInstance(comp.part, obj))
            part_w[comp.mask] = part_ids[(comp.part, comp.key)]
    return rgb, tuple(objects), tuple(parts), object_map, part_map


def _finish(rgb: np.ndarray, rng: np.random.Generator, night: bool,
            indoor: bool) -> np.ndarray:
    """Per-image lighting, colour cast, contrast and sensor noise -> uint8."""
    gain = rng.uniform(0.8, 1.12)
    contrast = rng.uniform(0.85, 1.15)
    cast = 1.0 + rng.normal(0.0, 0.04, 3)
    if night:
        gain *= 0.55
        cast *= (0.85, 0.9, 1.15)
    if indoor:
        cast *= (1.06, 1.0, 0.9)
    out = ((rgb - 0.5) * contrast + 0.5) * gain * cast.astype(np.float32)
    out += rng.normal(0.0, rng.uniform(0.01, 0.035), out.shape).astype(np.float32)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def _context(scene: SceneType, night: bool, rng: np.random.Generator) -> tuple[str, ...]:
    tags = [tag for tag, p in scene.context if rng.random() < p]
    if scene.name != "indoor":
        if night and rng.random() < 0.8:
            tags.append("night")
        elif not night and rng.random() < 0.5:
            tags.append("daytime")
    return tuple(tags)
