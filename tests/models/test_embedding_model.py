"""Stage 1 embedding network: head shape, the final-ReLU departure, round-trips."""

import keras
import numpy as np
import pytest

from conceptmask_tf.losses import CosineEmbeddingLoss
from conceptmask_tf.models import EmbeddingModel
from tests.models.tiny import DIM, assert_same_outputs, embedding_model, images


def test_embedding_is_d_dimensional_and_signed():
    e = np.asarray(embedding_model()(images(4), training=False))
    assert e.shape == (4, DIM)
    assert (e < 0).any(), "without the final ReLU the embedding must be able to go negative"


def test_paper_head_with_final_relu_cannot_fit_a_negative_target():
    # With e >= 0 and t <= 0 (t != 0): e.t <= 0, so 1 - cos(e, t) >= 1 for every image.
    model = embedding_model(final_relu=True)
    e = model(images(4), training=False)
    target = -np.ones((4, DIM), np.float32)
    per_sample = CosineEmbeddingLoss(reduction=None)(target, e)
    assert np.all(np.asarray(per_sample) >= 1.0 - 1e-6)


@pytest.mark.slow
def test_default_head_fits_signed_targets_better_than_the_paper_head():
    # Signed random targets, one per image; 20 full-batch steps. The last step's training
    # loss: the default head gets to ~0.15, the ReLU head stays above ~0.6 here.
    target = np.random.default_rng(0).normal(size=(4, DIM)).astype(np.float32)
    last_loss = {}
    for final_relu in (False, True):
        keras.utils.set_random_seed(0)
        model = EmbeddingModel("small_convnet", DIM, hidden_dims=(16, 16),
                               final_relu=final_relu)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=CosineEmbeddingLoss())
        history = model.fit(images(4), target, epochs=20, batch_size=4, verbose=0)
        last_loss[final_relu] = history.history["loss"][-1]
    assert last_loss[False] < 0.3
    assert last_loss[False] < last_loss[True] - 0.2


def test_config_round_trip_rebuilds_the_same_network():
    model = embedding_model()
    clone = EmbeddingModel.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    x = images(2)
    assert_same_outputs(clone(x, training=False), model(x, training=False))
    assert clone.output_stride == 8


def test_save_and_load_keep_predictions(tmp_path):
    model = embedding_model()
    path = str(tmp_path / "embedding.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, EmbeddingModel)
    x = images(2)
    assert_same_outputs(loaded(x, training=False), model(x, training=False))
