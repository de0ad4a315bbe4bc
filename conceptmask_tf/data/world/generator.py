"""generate_world: renders a whole concept world and writes its data root."""

from __future__ import annotations

import collections
import dataclasses
import sys
import time

import numpy as np
from tqdm import tqdm

from conceptmask_tf.data.world.config import WorldConfig
from conceptmask_tf.data.world.ontology import OBJECT_CLASSES, SCENE_TYPES, Ontology, build_ontology
from conceptmask_tf.data.world.regions import concept_areas
from conceptmask_tf.data.world.scene import requirement_for, sample_scene
from conceptmask_tf.data.world.writer import WorldFiles, staging_dir

# Random streams: one generator per image, seeded by (seed, stream, index[, attempt]).
TRAIN_STREAM, VAL_STREAM, TEST_STREAM = 1, 2, 3
MAX_COVERAGE_ATTEMPTS = 200


@dataclasses.dataclass(frozen=True)
class WorldSummary:
    """What generate_world wrote.

    Attributes:
        out_dir: The data root.
        counts: Images and annotations per kind (train, coco_images, oi_images, ...).
        splits: Level -> concepts (splits.json).
        seconds: Wall time of the generation.
    """

    out_dir: str
    counts: dict[str, int]
    splits: dict[str, list[str]]
    seconds: float

    def report(self) -> str:
        """A short human-readable summary."""
        c = self.counts
        lines = [
            f"concept world written to {self.out_dir} in {self.seconds:.1f} s",
            (f"  training images: {c.get('train', 0)} (tags.jsonl); masks for "
             f"{c.get('coco_images', 0)} (coco/), boxes for {c.get('oi_images', 0)} (Open "
             f"Images CSV) + {c.get('vg_images', 0)} (Visual Genome JSON)"),
            f"  held-out images: {c.get('val_images', 0)} val/, {c.get('test_images', 0)} eval/",
        ]
        for level, names in self.splits.items():
            lines.append(f"  {level} ({len(names)}): {', '.join(names)}")
        return "\n".join(lines)


def generate_world(config: WorldConfig, out_dir: str, overwrite: bool = False,
                   progress: bool = True) -> WorldSummary:
    """Renders a concept world and writes its data root (DESIGN.md §3) to `out_dir`.

    Files appear at once: everything is written to `<out_dir>.tmp`, which then replaces
    `out_dir`. The same config gives byte-identical files.

    Args:
        config: The world's configuration.
        out_dir: Data root to create.
        overwrite: Replace an existing concept world at `out_dir`.
        progress: Show a progress bar on stderr.

    Returns:
        A WorldSummary.

    Raises:
        FileExistsError: `out_dir` is not empty and `overwrite` is False (or it is not a
            concept world).
    """
    start = time.perf_counter()
    ontology = build_ontology(config.seed, config.num_phrases)
    num_val = max(1, round(config.num_eval_images * config.val_fraction))
    num_test = max(1, config.num_eval_images - num_val)
    with staging_dir(out_dir, overwrite) as root, tqdm(
            total=config.num_images + num_val + num_test, desc="concept world", unit="img",
            disable=not progress, file=sys.stderr, leave=False) as bar:
        files = WorldFiles(root, config, ontology)
        for i in range(config.num_images):
            rng = np.random.default_rng([config.seed, TRAIN_STREAM, i])
            scene = sample_scene(config.image_size, rng, config.min_objects, config.max_objects,
                                 config.region_min_pixels)
            files.add_training(i, i + 1, scene, rng)
            bar.update()
        next_id = config.num_images + 1
        for part, stream, target in (("val", VAL_STREAM, num_val),
                                     ("test", TEST_STREAM, num_test)):
            next_id += _held_out(files, part, stream, target, next_id, config, ontology, bar)
        files.write(_description(config, ontology))
    return WorldSummary(out_dir=out_dir, counts=dict(sorted(files.counts.items())),
                        splits=ontology.splits(), seconds=time.perf_counter() - start)


def _held_out(files: WorldFiles, part: str, stream: int, target: int, first_id: int,
              config: WorldConfig, ontology: Ontology, bar: tqdm) -> int:
    """Writes `target` ordinary held-out scenes, then scenes made to contain whichever concept
    has the fewest positives until every one has `min_eval_positives`. Returns the count."""
    positives: collections.Counter = collections.Counter()
    min_pixels = config.region_min_pixels

    def emit(index: int, scene, areas: dict[str, int]) -> None:
        files.add_eval(part, index, first_id + index, scene, areas)
        positives.update(name for name, area in areas.items() if area >= min_pixels)

    for index in range(target):
        rng = np.random.default_rng([config.seed, stream, index])
        scene = sample_scene(config.image_size, rng, config.min_objects, config.max_objects,
                             min_pixels)
        emit(index, scene, concept_areas(scene, ontology))
        bar.update()
    index = target
    while True:
        missing = [c for c in ontology.region_concepts
                   if positives[c.name] < config.min_eval_positives]
        if not missing:
            return index
        concept = min(missing, key=lambda c: (positives[c.name], c.id))
        for attempt in range(MAX_COVERAGE_ATTEMPTS):
            rng = np.random.default_rng([config.seed, stream, index, attempt])
            scene = sample_scene(config.image_size, rng, config.min_objects,
                                 config.max_objects, min_pixels, requirement_for(concept, rng))
            areas = concept_areas(scene, ontology)
            if areas.get(concept.name, 0) >= min_pixels:
                break
        else:
            raise RuntimeError(f"could not render a visible {concept.name!r} in "
                               f"{MAX_COVERAGE_ATTEMPTS} tries at image_size="
                               f"{config.image_size}; try a larger image_size")
        emit(index, scene, areas)
        bar.total += 1
        bar.update()
        index += 1


def _description(config: WorldConfig, ontology: Ontology) -> dict:
    """The world.json header: config, levels, catalogue of object classes and scenes."""
    return {
        "config": dataclasses.asdict(config),
        "min_region_pixels": config.region_min_pixels,
        "splits": ontology.splits(),
        "context_tags": list(ontology.names(("context",))),
        "object_classes": {c.name: {"group": c.group, "parts": list(c.parts),
                                    "colours": list(c.colours), "textures": list(c.textures),
                                    "width": list(c.width), "aspect": list(c.aspect),
                                    "supports": list(c.supports)}
                           for c in OBJECT_CLASSES},
        "scenes": {s.name: {"weight": s.weight, "stuff": list(s.stuff),
                            "objects": dict(s.objects), "context": dict(s.context),
                            "night_prob": s.night_prob}
                   for s in SCENE_TYPES},
    }
