"""Vocabulary: order, min_count, idf, lookup and concepts.tsv round trip."""

import math

import numpy as np
import pytest

from conceptmask_tf.concepts.vocabulary import Vocabulary
from conceptmask_tf.errors import DataError, UnknownConceptError

NAMES = ["dog", "sky", "cat", "red car", "zebra"]
COUNTS = [3, 5, 3, 1, 2]


def test_order_is_count_descending_then_name_and_min_count_drops():
    vocab, id_map = Vocabulary.from_counts(NAMES, COUNTS, num_images=10, min_count=2)
    assert vocab.concepts == ("sky", "cat", "dog", "zebra")  # "red car" has 1 < 2 images
    np.testing.assert_array_equal(vocab.counts, [5, 3, 3, 2])
    np.testing.assert_array_equal(id_map, [2, 0, 1, -1, 3])  # old id -> row
    assert vocab.num_images == 10  # N is not reduced by the filter


def test_idf_is_minus_log_p():
    vocab, _ = Vocabulary.from_counts(NAMES, COUNTS, num_images=10)
    # sky: 5 of 10 images -> -log(0.5) = log 2; red car: 1 of 10 -> log 10.
    assert vocab.idf[vocab.index("sky")] == pytest.approx(math.log(2))
    assert vocab.idf[vocab.index("red car")] == pytest.approx(math.log(10))


def test_lookup_normalises_and_unknown_raises():
    vocab, _ = Vocabulary.from_counts(NAMES, COUNTS, num_images=10)
    assert vocab.index(" Red_Car") == vocab.index("red car")
    assert "RED CAR" in vocab and "bus" not in vocab
    with pytest.raises(UnknownConceptError, match="'bus'"):
        vocab.index("bus")


def test_tsv_round_trip(tmp_path):
    vocab, _ = Vocabulary.from_counts(NAMES, COUNTS, num_images=10)
    path = str(tmp_path / "concepts.tsv")
    vocab.save_tsv(path)
    lines = (tmp_path / "concepts.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "concept\tcount\tidf"
    assert lines[1].split("\t")[:2] == ["sky", "5"]  # line i + 2 = row i
    loaded = Vocabulary.load_tsv(path)
    assert loaded.concepts == vocab.concepts and loaded.num_images == 10
    np.testing.assert_array_equal(loaded.counts, vocab.counts)
    np.testing.assert_allclose(loaded.idf, vocab.idf, rtol=1e-15)


@pytest.mark.parametrize("text, words", [
    ("name\tcount\tidf\nsky\t5\t0.69\n", "expected header"),
    ("concept\tcount\tidf\nsky\tfive\t0.69\n", "expected concept<TAB>count<TAB>idf"),
    ("concept\tcount\tidf\nsky\t5\t0.6931471805599453\ndog\t3\t9.0\n", "idf column disagrees"),
])
def test_bad_tsv_raises_data_error(tmp_path, text, words):
    path = tmp_path / "concepts.tsv"
    path.write_text(text)
    with pytest.raises(DataError, match=words):
        Vocabulary.load_tsv(str(path))
