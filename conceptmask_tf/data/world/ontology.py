"""The concept world's ontology: what can be drawn, and which supervision level each concept gets.

The *catalogue* (object classes, parts, stuff, attributes, phrase candidates, context tags,
scene types) is fixed. A world's `Ontology` assigns every region concept a supervision level and
picks phrases from the candidates, both by seed, under constraints that keep the assignment
sensible: a zero-shot concept always has a trained relative, strong concepts are objects, and
every phrase's words are trained. The last one works both ways: a zero-shot phrase ("red bus")
is composed of trained words, and a trained phrase never contains a zero-shot word (DESIGN.md
§3: a concept containing a zero-shot concept as a word is no training target, so "red bus"
cannot be trained when "bus" is zero-shot). Hence the words' levels are drawn first and the
phrases are chosen among the candidates whose words are trained. Concept ids and Open Images
style MIDs come from the catalogue order, so they are the same in every world.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from conceptmask_tf.data.layout import SPLITS
from conceptmask_tf.errors import UnknownConceptError

CONCEPT_TYPES = ("object", "part", "stuff", "attribute", "phrase", "context")
REGION_TYPES = ("object", "part", "stuff", "attribute", "phrase")
BOX_SOURCES = ("oi", "vg")


@dataclasses.dataclass(frozen=True)
class ObjectClass:
    """A drawable object class.

    Attributes:
        name: Concept name.
        group: Family used to relate concepts ("vehicle", "animal", ...).
        parts: Part concepts drawn inside it.
        colours: Colour attributes it can have (empty: it has none).
        textures: Texture attributes it can have.
        width: Range of its width as a fraction of the image side.
        aspect: Range of height / width.
        supports: Stuff its base stands on; "sky" means it flies.
    """

    name: str
    group: str
    parts: tuple[str, ...]
    colours: tuple[str, ...]
    textures: tuple[str, ...]
    width: tuple[float, float]
    aspect: tuple[float, float]
    supports: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SceneType:
    """A kind of scene: its stuff, which objects it holds and which context tags it implies.

    Attributes:
        name: Scene name.
        weight: Relative frequency among training images.
        stuff: Stuff concepts its background can contain.
        objects: (object class, relative weight) pairs.
        context: (context tag, probability of being tagged) pairs.
        night_prob: Probability of a night version (dark sky, "night" tag).
    """

    name: str
    weight: float
    stuff: tuple[str, ...]
    objects: tuple[tuple[str, float], ...]
    context: tuple[tuple[str, float], ...]
    night_prob: float = 0.0


@dataclasses.dataclass(frozen=True)
class Concept:
    """One concept of a world.

    Attributes:
        name: Normalised concept name.
        type: One of CONCEPT_TYPES.
        id: Stable id (catalogue order, from 1); the COCO category id everywhere.
        mid: Stable Open Images style label, "/m/cw001".
        level: Supervision level (a split of SPLITS), None for context tags.
        group: Family ("vehicle", "ground", "colour", ...).
        parents: For a part, the object classes that have it.
        words: For a phrase, (attribute, object).
        box_sources: For strong and weak_box concepts, where their boxes are written
            ("oi": Open Images CSV, "vg": Visual Genome JSON).
    """

    name: str
    type: str
    id: int
    mid: str
    level: str | None
    group: str
    parents: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    box_sources: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# The catalogue (immutable tables).

COLOURS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red", (0.82, 0.12, 0.12)),
    ("blue", (0.15, 0.32, 0.85)),
    ("green", (0.18, 0.62, 0.20)),
    ("yellow", (0.95, 0.82, 0.12)),
    ("white", (0.93, 0.93, 0.92)),
    ("black", (0.10, 0.10, 0.11)),
    ("brown", (0.48, 0.29, 0.13)),
    ("orange", (0.95, 0.50, 0.08)),
)
TEXTURES = ("striped", "dotted")

OBJECT_CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("car", "vehicle", ("wheel", "window"),
                ("red", "blue", "white", "black", "yellow", "green"), (),
                (0.16, 0.45), (0.5, 0.6), ("road", "snow")),
    ObjectClass("bus", "vehicle", ("wheel", "window", "door"),
                ("yellow", "red", "blue", "white", "green"), (),
                (0.30, 0.75), (0.5, 0.62), ("road",)),
    ObjectClass("truck", "vehicle", ("wheel", "window"),
                ("white", "red", "blue", "orange", "green"), (),
                (0.26, 0.60), (0.5, 0.6), ("road",)),
    ObjectClass("boat", "vehicle", ("hull", "sail"), ("white", "red", "blue", "yellow"), (),
                (0.15, 0.45), (0.85, 1.1), ("water",)),
    ObjectClass("person", "figure", ("head", "leg"), (), (),
                (0.07, 0.17), (2.2, 2.8), ("grass", "sand", "road", "snow", "floor")),
    ObjectClass("snowman", "figure", ("head",), ("white",), (),
                (0.08, 0.20), (1.6, 2.0), ("snow",)),
    ObjectClass("dog", "animal", ("head", "leg", "tail"), ("brown", "black", "white"),
                ("dotted",), (0.12, 0.32), (0.7, 0.85),
                ("grass", "sand", "road", "snow", "floor")),
    ObjectClass("cat", "animal", ("head", "leg", "tail"), ("orange", "black", "white", "brown"),
                ("striped",), (0.10, 0.25), (0.8, 0.95), ("grass", "floor")),
    ObjectClass("horse", "animal", ("head", "leg", "tail"), ("brown", "black", "white"), (),
                (0.18, 0.42), (0.9, 1.05), ("grass", "snow", "sand")),
    ObjectClass("bird", "animal", ("wing",), ("red", "blue", "yellow", "black", "white"), (),
                (0.05, 0.14), (0.55, 0.7), ("sky", "grass", "sand", "road", "snow", "water")),
    ObjectClass("house", "building", ("roof", "window", "door"),
                ("red", "white", "yellow", "blue"), (),
                (0.20, 0.50), (0.85, 1.1), ("grass", "snow", "road")),
    ObjectClass("tree", "plant", ("trunk", "leaves"), (), (),
                (0.10, 0.30), (1.3, 2.0), ("grass", "snow", "road")),
    ObjectClass("ball", "toy", (), ("red", "blue", "yellow", "green", "white", "orange"),
                ("striped", "dotted"), (0.035, 0.12), (1.0, 1.0),
                ("grass", "sand", "floor", "snow")),
    ObjectClass("kite", "toy", (), ("red", "yellow", "blue", "green", "orange"),
                ("striped", "dotted"), (0.07, 0.18), (1.2, 1.45), ("sky",)),
    ObjectClass("umbrella", "furniture", (), ("red", "yellow", "blue", "green", "orange"),
                ("striped", "dotted"), (0.14, 0.32), (0.9, 1.15), ("sand", "grass")),
    ObjectClass("chair", "furniture", ("leg",), ("brown", "red", "blue", "green", "black"), (),
                (0.09, 0.20), (1.4, 1.8), ("floor", "sand", "grass")),
    ObjectClass("table", "furniture", ("leg",), ("brown", "white", "black"), (),
                (0.18, 0.42), (0.5, 0.7), ("floor", "grass")),
)

PARTS = ("wheel", "window", "door", "roof", "head", "leg", "tail", "trunk", "leaves", "hull",
         "sail", "wing")

STUFF: tuple[tuple[str, str], ...] = (  # (name, group)
    ("sky", "sky"), ("cloud", "sky"), ("mountain", "terrain"), ("grass", "ground"),
    ("sand", "ground"), ("snow", "ground"), ("road", "ground"), ("water", "water"),
    ("wall", "indoor"), ("floor", "indoor"),
)

PHRASE_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("red", "car"), ("blue", "car"), ("white", "car"), ("yellow", "bus"), ("red", "bus"),
    ("white", "truck"), ("white", "boat"), ("red", "boat"), ("black", "cat"), ("white", "cat"),
    ("orange", "cat"), ("striped", "cat"), ("brown", "dog"), ("white", "dog"),
    ("black", "dog"), ("dotted", "dog"), ("red", "ball"), ("yellow", "ball"),
    ("striped", "ball"), ("dotted", "ball"), ("striped", "umbrella"), ("yellow", "kite"),
    ("brown", "horse"), ("blue", "bird"), ("red", "house"), ("green", "chair"),
)

CONTEXT_TAGS = ("outdoor", "indoor", "city", "street", "park", "nature", "beach", "summer",
                "vacation", "winter", "holiday", "home", "daytime", "night")

SCENE_TYPES: tuple[SceneType, ...] = (
    SceneType("city", 0.20, ("sky", "cloud", "mountain", "grass", "road"),
              (("car", 1.0), ("bus", 0.45), ("truck", 0.4), ("person", 0.8), ("dog", 0.25),
               ("house", 0.45), ("tree", 0.4), ("bird", 0.3)),
              (("outdoor", 0.9), ("city", 0.85), ("street", 0.6)), night_prob=0.3),
    SceneType("park", 0.18, ("sky", "cloud", "mountain", "grass", "road"),
              (("tree", 1.0), ("person", 0.7), ("dog", 0.5), ("cat", 0.2), ("ball", 0.45),
               ("kite", 0.4), ("bird", 0.5), ("house", 0.3), ("horse", 0.35), ("chair", 0.1),
               ("table", 0.1), ("umbrella", 0.1)),
              (("outdoor", 0.9), ("park", 0.8), ("nature", 0.6), ("summer", 0.5))),
    SceneType("beach", 0.16, ("sky", "cloud", "mountain", "water", "sand"),
              (("person", 0.8), ("ball", 0.5), ("umbrella", 0.7), ("boat", 0.55),
               ("bird", 0.45), ("kite", 0.4), ("dog", 0.3), ("chair", 0.3)),
              (("outdoor", 0.9), ("beach", 0.9), ("summer", 0.8), ("vacation", 0.7))),
    SceneType("lake", 0.12, ("sky", "cloud", "mountain", "water", "grass"),
              (("boat", 1.0), ("bird", 0.6), ("tree", 0.5), ("house", 0.25), ("person", 0.3),
               ("horse", 0.2), ("dog", 0.2)),
              (("outdoor", 0.9), ("nature", 0.8), ("vacation", 0.4), ("summer", 0.4))),
    SceneType("winter", 0.14, ("sky", "cloud", "mountain", "snow", "road"),
              (("snowman", 0.8), ("tree", 0.7), ("house", 0.6), ("person", 0.6), ("dog", 0.4),
               ("car", 0.3), ("horse", 0.2), ("bird", 0.2)),
              (("outdoor", 0.9), ("winter", 0.9), ("holiday", 0.5), ("nature", 0.3)),
              night_prob=0.3),
    SceneType("indoor", 0.20, ("wall", "floor"),
              (("cat", 0.8), ("dog", 0.5), ("person", 0.6), ("ball", 0.45), ("chair", 0.8),
               ("table", 0.6)),
              (("indoor", 0.9), ("home", 0.8))),
)

# Share of each type's concepts per level (largest-remainder rounding, >= 1 per level).
LEVEL_SHARES: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = (
    ("object", (("strong", 0.45), ("weak_box", 0.25), ("weak_image", 0.15),
                ("zero_shot", 0.15))),
    ("part", (("weak_box", 0.6), ("weak_image", 0.2), ("zero_shot", 0.2))),
    ("stuff", (("weak_box", 0.7), ("weak_image", 0.2), ("zero_shot", 0.1))),
    ("attribute", (("weak_image", 0.8), ("zero_shot", 0.2))),
    ("phrase", (("weak_image", 0.7), ("zero_shot", 0.3))),
)
_MIN_STRONG_GROUPS = 3
_MAX_ASSIGNMENT_DRAWS = 10000


def colour_rgb(name: str) -> tuple[float, float, float]:
    """The base RGB (floats in [0, 1]) of a colour attribute."""
    for colour, rgb in COLOURS:
        if colour == name:
            return rgb
    raise UnknownConceptError(name, "not a colour of the concept world")


def object_class(name: str) -> ObjectClass:
    for cls in OBJECT_CLASSES:
        if cls.name == name:
            return cls
    raise UnknownConceptError(name, "not an object class of the concept world")


def scene_type(name: str) -> SceneType:
    for scene in SCENE_TYPES:
        if scene.name == name:
            return scene
    raise ValueError(f"unknown scene type {name!r}")


def phrase_name(attribute: str, obj: str) -> str:
    return f"{attribute} {obj}"


def _catalogue() -> list[tuple[str, str, str, tuple[str, ...], tuple[str, ...]]]:
    """All possible concepts in a fixed order: (name, type, group, parents, words)."""
    rows = []
    for cls in OBJECT_CLASSES:
        rows.append((cls.name, "object", cls.group, (), ()))
    for part in PARTS:
        parents = tuple(c.name for c in OBJECT_CLASSES if part in c.parts)
        rows.append((part, "part", "part", parents, ()))
    for name, group in STUFF:
        rows.append((name, "stuff", group, (), ()))
    for name, _ in COLOURS:
        rows.append((name, "attribute", "colour", (), ()))
    for name in TEXTURES:
        rows.append((name, "attribute", "texture", (), ()))
    for attribute, obj in PHRASE_CANDIDATES:
        rows.append((phrase_name(attribute, obj), "phrase", "phrase", (), (attribute, obj)))
    for name in CONTEXT_TAGS:
        rows.append((name, "context", "context", (), ()))
    return rows


def check_catalogue() -> None:
    """Raises ValueError if the tables above contradict each other (a programming error)."""
    names = [row[0] for row in _catalogue()]
    if len(names) != len(set(names)):
        raise ValueError("concept world catalogue has duplicate names")
    stuff = {name for name, _ in STUFF}
    colours = {name for name, _ in COLOURS}
    for cls in OBJECT_CLASSES:
        bad = [p for p in cls.parts if p not in PARTS]
        bad += [c for c in cls.colours if c not in colours]
        bad += [t for t in cls.textures if t not in TEXTURES]
        bad += [s for s in cls.supports if s not in stuff]
        if bad:
            raise ValueError(f"object class {cls.name!r} refers to unknown {bad}")
    for attribute, obj in PHRASE_CANDIDATES:
        cls = object_class(obj)
        if attribute not in cls.colours + cls.textures:
            raise ValueError(f"phrase {attribute} {obj}: {obj} cannot be {attribute}")
    for scene in SCENE_TYPES:
        for obj, _ in scene.objects:
            if not set(object_class(obj).supports) & (set(scene.stuff) | {"sky"}):
                raise ValueError(f"scene {scene.name!r} cannot support {obj!r}")


@dataclasses.dataclass(frozen=True)
class Ontology:
    """The concepts of one world, in catalogue order.

    Attributes:
        concepts: Every concept of the world (phrases not chosen are left out).
    """

    concepts: tuple[Concept, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.concepts})

    def concept(self, name: str) -> Concept:
        """The concept called `name`; raises UnknownConceptError if it is not in this world."""
        try:
            return self._by_name[name]  # type: ignore[attr-defined]
        except KeyError:
            raise UnknownConceptError(name, "not a concept of this concept world") from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name  # type: ignore[attr-defined]

    def names(self, types: Iterable[str] = CONCEPT_TYPES) -> tuple[str, ...]:
        """Names of the concepts of the given types, in catalogue order."""
        wanted = set(types)
        return tuple(c.name for c in self.concepts if c.type in wanted)

    @property
    def region_concepts(self) -> tuple[Concept, ...]:
        """Concepts that have a region (all but context tags)."""
        return tuple(c for c in self.concepts if c.type in REGION_TYPES)

    @property
    def phrases(self) -> tuple[Concept, ...]:
        return tuple(c for c in self.concepts if c.type == "phrase")

    def at_level(self, level: str) -> tuple[Concept, ...]:
        return tuple(c for c in self.concepts if c.level == level)

    def splits(self) -> dict[str, list[str]]:
        """The splits.json content: level -> concept names."""
        return {level: [c.name for c in self.at_level(level)] for level in SPLITS}

    def box_concepts(self, source: str) -> tuple[Concept, ...]:
        """Concepts whose boxes are written to `source` ("oi" or "vg")."""
        return tuple(c for c in self.concepts if source in c.box_sources)

    def to_json(self) -> list[dict]:
        return [c.to_json() for c in self.concepts]


def build_ontology(seed: int, num_phrases: int) -> Ontology:
    """Chooses the phrases and assigns levels and box sources for a world.

    Args:
        seed: World seed; different seeds give different (sensible) assignments.
        num_phrases: How many phrase candidates the world uses.

    Returns:
        The world's Ontology.

    Raises:
        ValueError: More phrases than candidates.
        RuntimeError: No sensible assignment was found, e.g. num_phrases so large that a
            phrase would have to contain a zero-shot word.
    """
    check_catalogue()
    rng = np.random.default_rng([seed, 0])
    rows = _catalogue()
    mids = {row[0]: (i + 1, f"/m/cw{i + 1:03d}") for i, row in enumerate(rows)}
    candidates = [row for row in rows if row[1] == "phrase"]
    if num_phrases > len(candidates):
        raise ValueError(f"num_phrases={num_phrases} but only {len(candidates)} candidates")
    rows, levels = _assign_levels(rows, num_phrases, rng)
    sources = _assign_box_sources(rows, levels, rng)
    concepts = []
    for name, kind, group, parents, words in rows:
        cid, mid = mids[name]
        concepts.append(Concept(name=name, type=kind, id=cid, mid=mid, level=levels.get(name),
                                group=group, parents=parents, words=words,
                                box_sources=sources.get(name, ())))
    return Ontology(tuple(concepts))


def _level_counts(n: int, shares: tuple[tuple[str, float], ...]) -> list[tuple[str, int]]:
    """Largest-remainder rounding of n * share with at least one concept per level."""
    raw = [(level, n * share) for level, share in shares]
    counts = {level: max(1, int(value)) for level, value in raw}
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i][1] - int(raw[i][1])), i))
    i = 0
    while sum(counts.values()) < n:
        counts[raw[order[i % len(order)]][0]] += 1
        i += 1
    while sum(counts.values()) > n:  # only when n < number of levels
        level = max(counts, key=lambda k: counts[k])
        counts[level] -= 1
    return [(level, counts[level]) for level, _ in shares]


def _draw_levels(names: list[str], shares: tuple[tuple[str, float], ...],
                 rng: np.random.Generator, levels: dict[str, str]) -> None:
    """Assigns `names` levels in the proportions of `shares`, in a random order."""
    order = rng.permutation(len(names))
    start = 0
    for level, count in _level_counts(len(names), shares):
        for i in order[start:start + count]:
            levels[names[i]] = level
        start += count


def _assign_levels(rows: list, num_phrases: int, rng: np.random.Generator
                   ) -> tuple[list, dict[str, str]]:
    """Draws levels and phrases until the assignment passes `_is_sensible`.

    Each draw assigns the levels of the non-phrase concepts, chooses `num_phrases`
    phrases among the candidates whose words are both trained, then assigns the phrases'
    levels.

    Returns:
        (the catalogue rows without the phrases not chosen, concept -> level).
    """
    words = [row for row in rows if row[1] != "phrase"]
    candidates = [row for row in rows if row[1] == "phrase"]
    by_type: dict[str, list[str]] = {}
    for name, kind, *_ in words:
        by_type.setdefault(kind, []).append(name)
    most_phrases = 0
    for _ in range(_MAX_ASSIGNMENT_DRAWS):
        levels: dict[str, str] = {}
        for kind, shares in LEVEL_SHARES:
            if kind != "phrase":
                _draw_levels(by_type.get(kind, []), shares, rng, levels)
        if not _is_sensible(words, levels):
            continue
        allowed = [row for row in candidates
                   if all(levels[w] != "zero_shot" for w in row[4])]
        most_phrases = max(most_phrases, len(allowed))
        if len(allowed) < num_phrases:
            continue
        chosen = {allowed[i][0] for i in rng.choice(len(allowed), num_phrases, replace=False)}
        kept = [row for row in rows if row[1] != "phrase" or row[0] in chosen]
        _draw_levels([row[0] for row in kept if row[1] == "phrase"],
                     dict(LEVEL_SHARES)["phrase"], rng, levels)
        if _is_sensible(kept, levels):
            return kept, levels
    raise RuntimeError(
        f"no sensible level assignment with num_phrases={num_phrases} in "
        f"{_MAX_ASSIGNMENT_DRAWS} draws: at most {most_phrases} phrase candidates had no "
        "zero-shot word (a phrase containing a zero-shot word cannot be trained, DESIGN.md "
        "§3); lower num_phrases")


def _is_sensible(rows: list, levels: dict[str, str]) -> bool:
    """True if every zero-shot concept has a trained relative, every phrase's words are
    trained and strong spans enough groups."""
    info = {row[0]: row for row in rows}

    def trained(name: str) -> bool:
        return levels.get(name) != "zero_shot"

    for name, kind, group, parents, words in rows:
        if kind == "phrase":
            # Zero-shot: composed of trained words. Trained: no zero-shot word, or a zero-shot
            # concept would be a training target inside it (DESIGN.md §3).
            if not all(trained(w) for w in words):
                return False
            continue
        if trained(name):
            continue
        if kind == "part":
            related = parents
        else:
            related = tuple(r[0] for r in rows if r[1] == kind and r[2] == group and r[0] != name)
        if not any(trained(r) for r in related):
            return False
    strong_groups = {info[n][2] for n, level in levels.items() if level == "strong"}
    return len(strong_groups) >= _MIN_STRONG_GROUPS


def _assign_box_sources(rows: list, levels: dict[str, str],
                        rng: np.random.Generator) -> dict[str, tuple[str, ...]]:
    """Strong concepts go to both box files; weak_box ones to OI only, VG only or both."""
    sources: dict[str, tuple[str, ...]] = {}
    weak = []
    for name, *_ in rows:
        if levels.get(name) == "strong":
            sources[name] = BOX_SOURCES
        elif levels.get(name) == "weak_box":
            weak.append(name)
    order = [weak[i] for i in rng.permutation(len(weak))]
    third = max(1, len(order) // 3)
    for i, name in enumerate(order):
        if i < third:
            sources[name] = ("oi",)
        elif i < 2 * third:
            sources[name] = ("vg",)
        else:
            sources[name] = BOX_SOURCES
    return sources
