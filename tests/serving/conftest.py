"""Shared fixtures of the serving tests: a tiny trained-looking work dir and its export.

Helper B's conversion / runtime / segment tests reuse them:
- `tiny_work_dir`: <work>/models (tiny untrained stage networks, image_size 32, attention
  scales 1 and 2, refinement target_concepts = SUPERVISED), <work>/concepts (VOCABULARY,
  D = 8).
- `tiny_segmenter`: the `ConceptMaskSegmenter` assembled from it, with the calibration
  CALIBRATION set, saved as <work>/concept_mask.
- `tiny_model`: (ConceptMask, ConceptEmbeddings, info) of `tiny_segmenter`.
- `tiny_export_dir` / `tiny_saved_model`: `export_saved_model` of that model into
  <export>/conceptmask/1 with max_image_side = MAX_SIDE (small, so a "huge" image is cheap).
- `tiny_loaded`: the SavedModel loaded with tf.saved_model.load.
- `make_image(height, width, seed)`: random uint8 [height, width, 3] pixels.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.concepts.vocabulary import Vocabulary
from tests.models import tiny

DIM = tiny.DIM
IMAGE_SIZE = 32
MAX_SIDE = 64
# "hot dog" and "traffic light" are vocabulary phrases whose words are not all in the
# vocabulary ("hot", "traffic"); "red car" and "light red" are not vocabulary concepts.
VOCABULARY = ("sky", "dog", "car", "red", "cat", "cloud", "light", "hot dog", "t-shirt",
              "traffic light")
COUNTS = (9, 7, 6, 5, 4, 3, 3, 2, 2, 1)
NUM_IMAGES = 12
SUPERVISED = ["dog", "sky", "car"]
CALIBRATION = {"threshold": 0.3, "scale": 4.0, "theta": 0.25}


def concept_embeddings() -> ConceptEmbeddings:
    """VOCABULARY with random (not orthogonal) D = 8 vectors and distinct idf values."""
    vocabulary = Vocabulary(VOCABULARY, np.asarray(COUNTS, np.int64), NUM_IMAGES)
    vectors = np.random.default_rng(3).normal(size=(len(VOCABULARY), DIM)).astype(np.float32)
    return ConceptEmbeddings(vocabulary, vectors)


def write_models(models: str) -> str:
    """Tiny untrained stage networks in the work-dir layout, with their config.json."""
    configs = {
        "embedding": (tiny.embedding_model(), {"image_size": IMAGE_SIZE}, {}),
        "refinement": (tiny.refinement_model(), {"image_size": IMAGE_SIZE},
                       {"target_concepts": SUPERVISED}),
        "segmentation": (tiny.segmentation_model(2), {"image_size": IMAGE_SIZE,
                                                      "attention_scales": [1.0, 2.0]}, {}),
    }
    for name, (model, config, runtime) in configs.items():
        os.makedirs(os.path.join(models, name))
        model.save(os.path.join(models, name, f"{name}.keras"))
        with open(os.path.join(models, name, "config.json"), "w") as f:
            json.dump({"stage": name, "config": config, "runtime": runtime}, f)
    return models


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 [height, width, 3] random pixels."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)


@pytest.fixture(scope="session")
def tiny_work_dir(tmp_path_factory):
    """<work>/models and <work>/concepts (see the module docstring)."""
    work = tmp_path_factory.mktemp("serving_work")
    write_models(str(work / "models"))
    concept_embeddings().save(str(work / "concepts"))
    return work


@pytest.fixture(scope="session")
def tiny_segmenter(tiny_work_dir):
    """The assembled tiny model with CALIBRATION, saved as <work>/concept_mask. Do not
    change its calibration: the export fixtures share it."""
    from conceptmask_tf.assembly.segmenter import ConceptMaskSegmenter

    segmenter = ConceptMaskSegmenter.assemble(str(tiny_work_dir / "models"))
    segmenter.model.set_calibration(**CALIBRATION)
    segmenter.calibration = {**CALIBRATION, "source": "set by the test"}
    segmenter.save_to_preset(str(tiny_work_dir / "concept_mask"))
    return segmenter


@pytest.fixture(scope="session")
def tiny_model(tiny_segmenter):
    """(ConceptMask, ConceptEmbeddings, info) of `tiny_segmenter`."""
    return tiny_segmenter.model, tiny_segmenter.embeddings, tiny_segmenter.info()


@pytest.fixture(scope="session")
def tiny_export_dir(tiny_model, tmp_path_factory):
    """An export dir with conceptmask/1 (checked signatures, max_image_side MAX_SIDE)."""
    from conceptmask_tf.serving.exporter import export_saved_model

    export = tmp_path_factory.mktemp("serving_export")
    model, embeddings, info = tiny_model
    export_saved_model(model, embeddings, str(export), max_image_side=MAX_SIDE, info=info)
    return export


@pytest.fixture(scope="session")
def tiny_saved_model(tiny_export_dir) -> str:
    """Path of the exported version dir <export>/conceptmask/1."""
    return str(tiny_export_dir / "conceptmask" / "1")


@pytest.fixture(scope="session")
def tiny_loaded(tiny_saved_model):
    """The exported SavedModel, loaded."""
    import tensorflow as tf

    return tf.saved_model.load(tiny_saved_model)


@pytest.fixture
def make_image():
    """random_image(height, width, seed) as a fixture."""
    return random_image
