"""Session fixtures of the conversion, runtime and segment tests (a pytest plugin).

Test modules load it with `pytest_plugins = ["tests.serving.convert_fixtures"]`, so the
slow conversions run once per session whichever of those modules run.

The model is a tiny work dir like the conftest's (seeded: `sharp_work_dir`), loaded with
`ConceptMaskSegmenter.assemble` (weak-concept rule on, CALIBRATION set), its mask logits sharpened
(`sharpen_mask_logits`): the random network gives probabilities within ~0.1 of one value,
so every mask would be all 0 or all 1 and a mask-IoU check would pass whatever a
conversion did. It is exported the way
`conceptmask-export` does: the checked SavedModel (`export_saved_model`, the reference
every runtime is compared with) and the check-free one converted to TFLite and ONNX.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from conceptmask_tf.models import ConceptMask

LOGIT_GAIN = 10.0
SEED = 0
# (height, width, K): both aspect ratios, K = 1 and K >= 3, sizes unlike the 32 px S.
CASES = ((40, 50, 1), (64, 33, 3), (17, 90, 5))
CONCEPT_ROWS = (1, 3, 5, 0, 7)  # vocabulary rows: supervised and not (conftest SUPERVISED)


def structured_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 [H, W, 3]: smooth colour waves plus noise (regions for masks to follow)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    waves = np.stack([np.sin(6 * xx + seed), np.cos(5 * yy - seed), np.sin(4 * (xx + yy))], -1)
    pixels = (waves * 0.5 + 0.5) * 200 + rng.uniform(0, 55, (height, width, 3))
    return pixels.astype(np.uint8)


def case_inputs(vectors: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image uint8 [H, W, 3], word_vectors float32 [K, D]) of each of CASES."""
    return [(structured_image(h, w, seed), vectors[list(CONCEPT_ROWS[:k])])
            for seed, (h, w, k) in enumerate(CASES)]


def sharpen_mask_logits(model: ConceptMask, vectors: np.ndarray,
                        gain: float = LOGIT_GAIN) -> None:
    """Rescales the final 1x1 logit layer so that masks mix 0 and 1.

    logits -> gain * (logits - c), c the median logit over the CASES images: the resize
    and sigmoid after that layer are monotonic, so the masks follow the network's spatial
    structure, thresholded near its median.
    """
    logits = []
    for image, concept_vectors in case_inputs(vectors):
        probs = model({"image": image[None].astype(np.float32),
                       "word_vectors": concept_vectors[None]})["mask_probs"]
        probs = np.clip(np.asarray(probs, np.float64), 1e-7, 1 - 1e-7)
        logits.append(np.log(probs / (1 - probs)).ravel())
    centre = float(np.median(np.concatenate(logits)))
    layer = model.segmentation.get_layer("logit")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * gain, (bias - centre) * gain])


@pytest.fixture(scope="session")
def sharp_work_dir(tmp_path_factory):
    """The conftest's tiny work dir, its networks initialised from a fixed seed.

    Fixed, so that the quantized model's mask IoU is reproducible: over random
    initialisations the per-image IoU of this tiny network ranged 0.96 to 0.999.
    """
    import keras

    from tests.serving.conftest import concept_embeddings, write_models

    work = tmp_path_factory.mktemp("sharp_work")
    keras.utils.set_random_seed(SEED)
    write_models(str(work / "models"))
    concept_embeddings().save(str(work / "concepts"))
    return work


@pytest.fixture(scope="session")
def sharp_model(sharp_work_dir):
    """(ConceptMask, ConceptEmbeddings) of `sharp_work_dir`, mask logits sharpened."""
    from conceptmask_tf.assembly.segmenter import ConceptMaskSegmenter
    from tests.serving.conftest import CALIBRATION

    segmenter = ConceptMaskSegmenter.assemble(str(sharp_work_dir / "models"))
    model, embeddings = segmenter.model, segmenter.embeddings
    model.set_calibration(**CALIBRATION)
    sharpen_mask_logits(model, embeddings.vectors)
    return model, embeddings


@pytest.fixture(scope="session")
def sharp_segmenter_dir(sharp_model, sharp_work_dir) -> str:
    """`sharp_model` saved as a ConceptMask folder (what conceptmask-assemble writes)."""
    from conceptmask_tf.assembly.segmenter import ConceptMaskSegmenter
    from tests.serving.conftest import SUPERVISED

    model, embeddings = sharp_model
    path = str(sharp_work_dir / "concept_mask")
    ConceptMaskSegmenter(model, embeddings, SUPERVISED).save_to_preset(path)
    return path


@pytest.fixture(scope="session")
def sharp_export(sharp_model, tmp_path_factory) -> dict[str, str]:
    """{"export_dir", "saved_model" (checked, with vocabulary), "conversion_source"}."""
    from conceptmask_tf.serving.exporter import export_saved_model, write_conversion_saved_model

    model, embeddings = sharp_model
    export = tmp_path_factory.mktemp("sharp_export")
    saved_model = export_saved_model(model, embeddings, str(export), serving_root=None)
    source = write_conversion_saved_model(model, str(export / "conversion_source"))
    return {"export_dir": str(export), "saved_model": saved_model, "conversion_source": source}


@pytest.fixture(scope="session")
def sharp_tflite(sharp_export) -> str:
    """The float32 TFLite conversion."""
    from conceptmask_tf.serving.convert import to_tflite

    return to_tflite(sharp_export["conversion_source"],
                     os.path.join(sharp_export["export_dir"], "conceptmask.tflite"))


@pytest.fixture(scope="session")
def sharp_tflite_dynamic_range(sharp_export) -> str:
    """The dynamic-range-quantized TFLite conversion."""
    from conceptmask_tf.serving.convert import to_tflite

    return to_tflite(sharp_export["conversion_source"],
                     os.path.join(sharp_export["export_dir"], "dynamic_range.tflite"),
                     quantize=True)


@pytest.fixture(scope="session")
def sharp_onnx(sharp_export) -> str:
    """The ONNX (opset 17) conversion."""
    from conceptmask_tf.serving.convert import to_onnx

    return to_onnx(sharp_export["conversion_source"],
                   os.path.join(sharp_export["export_dir"], "conceptmask.onnx"))


@pytest.fixture(scope="session")
def parity_cases(sharp_model) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image uint8 [H, W, 3], word_vectors float32 [K, D]) of each of CASES."""
    return case_inputs(sharp_model[1].vectors)


@pytest.fixture(scope="session")
def reference_outputs(sharp_export, parity_cases) -> list[dict[str, np.ndarray]]:
    """serving_default of the checked SavedModel (what TF Serving returns) on CASES."""
    import tensorflow as tf

    serve = tf.saved_model.load(sharp_export["saved_model"]).signatures["serving_default"]
    return [{k: v.numpy() for k, v in serve(image=tf.constant(image),
                                            word_vectors=tf.constant(vectors)).items()}
            for image, vectors in parity_cases]
