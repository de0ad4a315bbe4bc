"""A tiny concept world shared by the world tests, with the scenes behind every image.

The generator is run once per session with its writer wrapped, so tests can compare what was
written to files against the rendered scenes (the ground truth) image by image.
"""

from __future__ import annotations

import dataclasses

import pytest

from conceptmask_tf.data.world import WorldConfig, build_ontology, generate_world
from conceptmask_tf.data.world.writer import WorldFiles

TINY = WorldConfig(seed=3, num_images=30, image_size=64, num_eval_images=12,
                   min_eval_positives=2, num_phrases=8)


@dataclasses.dataclass
class TinyWorld:
    root: str
    config: WorldConfig
    scenes: dict  # image file name -> RenderedScene

    @property
    def ontology(self):
        return build_ontology(self.config.seed, self.config.num_phrases)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> TinyWorld:
    scenes = {}
    add_training, add_eval = WorldFiles.add_training, WorldFiles.add_eval

    def spy_training(self, index, image_id, scene, rng):
        scenes[self.file_name("train", index)] = scene
        return add_training(self, index, image_id, scene, rng)

    def spy_eval(self, part, index, image_id, scene, areas):
        scenes[self.file_name(part, index)] = scene
        return add_eval(self, part, index, image_id, scene, areas)

    root = str(tmp_path_factory.mktemp("tiny") / "world")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WorldFiles, "add_training", spy_training)
        patch.setattr(WorldFiles, "add_eval", spy_eval)
        generate_world(TINY, root, progress=False)
    return TinyWorld(root, TINY, scenes)
