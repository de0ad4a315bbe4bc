"""Stage 1 tag loss against hand-worked values."""

import math

import numpy as np
import pytest

from conceptmask_tf.losses import TagLoss


def _entropy(logit: float, label: float) -> float:
    p = 1.0 / (1.0 + math.exp(-logit))
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def test_per_sample_values_by_hand():
    # V = 4; image 0 tagged with rows 0 and 2 (row 2 twice, -1 padding), image 1 untagged.
    rows = np.array([[0, 2, 2, -1], [-1, -1, -1, -1]], np.int32)
    logits = np.array([[2.0, -1.0, 0.0, 3.0], [0.5, -0.5, 1.0, -2.0]], np.float32)
    expected = [np.mean([_entropy(2.0, 1), _entropy(-1.0, 0), _entropy(0.0, 1),
                         _entropy(3.0, 0)]),
                np.mean([_entropy(x, 0) for x in logits[1]])]
    per_sample = TagLoss(4, reduction=None)(rows, logits)
    np.testing.assert_allclose(per_sample, expected, rtol=1e-5)


def test_ignored_rows_leave_the_mean_whether_tagged_or_not():
    rows = np.array([[0, 3, -1]], np.int32)
    logits = np.array([[2.0, -1.0, 0.0, -40.0]], np.float32)
    # Row 3 is tagged but ignored (a zero-shot concept): its huge error must not count.
    expected = np.mean([_entropy(2.0, 1), _entropy(-1.0, 0), _entropy(0.0, 0)])
    loss = TagLoss(4, ignored_rows=[3], reduction=None)(rows, logits)
    np.testing.assert_allclose(loss, [expected], rtol=1e-5)


def test_large_logits_stay_finite():
    loss = TagLoss(2, reduction=None)(np.array([[0]]), np.array([[500.0, 500.0]], np.float32))
    assert float(loss[0]) == pytest.approx(250.0, rel=1e-5)  # (0 + 500) / 2


@pytest.mark.parametrize("kwargs", [{"ignored_rows": [4]}, {"ignored_rows": [0, 1, 2, 3]}])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        TagLoss(4, **kwargs)


def test_config_round_trip():
    loss = TagLoss(5, ignored_rows=[4, 1])
    again = TagLoss.from_config(loss.get_config())
    assert (again.vocabulary_size, again.ignored_rows) == (5, [1, 4])
