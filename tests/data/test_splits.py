"""splits.json and the per-split ground-truth files."""

import pytest
from pycocotools import mask as mask_utils

from conceptmask_tf.data import splits
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.errors import DataError

try:  # tests/ as a package
    from tests.data import fixtures
except ImportError:  # pytest's rootdir-relative import (no __init__.py)
    import fixtures


def _write(tmp_path, data):
    return fixtures.write_json(str(tmp_path / "splits.json"), data)


def test_read_splits_normalises_names_in_split_order(tmp_path):
    data = {"zero_shot": ["Red_Car", "red car"], "weak_image": ["plant"], "weak_box": [],
            "strong": ["Person", "Traffic Light"]}
    assert list(splits.read_splits(_write(tmp_path, data)).items()) == [
        ("strong", ("person", "traffic light")), ("weak_box", ()), ("weak_image", ("plant",)),
        ("zero_shot", ("red car",))]  # a name repeated in one split is kept once


@pytest.mark.parametrize("data, record, words", [
    ({"strong": [], "weak_box": [], "weak_image": []}, None, "missing: zero_shot"),
    (dict(fixtures.SPLITS, extra=[]), None, "unknown: extra"),
    (dict(fixtures.SPLITS, weak_box="car"), "weak_box", "list of concept names"),
    (dict(fixtures.SPLITS, weak_box=["car", 3]), "weak_box", "list of concept names"),
    (dict(fixtures.SPLITS, weak_image=["--"]), "weak_image", "no word characters"),
    (dict(fixtures.SPLITS, zero_shot=["PERSON"]), "zero_shot",
     "'person' is in two splits: strong and zero_shot"),
    (["person"], None, "must be an object"),
])
def test_bad_splits_raise_naming_file_and_split(tmp_path, data, record, words):
    path = _write(tmp_path, data)
    with pytest.raises(DataError) as info:
        splits.read_splits(path)
    assert info.value.path == path and info.value.record == record
    assert words in str(info.value)


def test_ground_truth_of_a_split_from_eval_and_val(tmp_path):
    root = DataRoot(fixtures.write_data_root(str(tmp_path), eval_splits=("strong",),
                                             val_splits=("strong",)))
    test = splits.read_split_ground_truth(root, "strong")
    assert [i.image for i in test] == ["images/img1.jpg", "images/sub/img2.png",
                                       "images/img3.jpg"]
    assert int(mask_utils.area(test[0].masks[0].rle)) == 23  # merged person, see fixtures
    val = splits.read_split_ground_truth(root, "strong", which="val", skips=SkipCounter())
    assert [(i.image, i.neg_concepts) for i in val] == [("images/sub/img2.png", ("cat",)),
                                                        ("images/img3.jpg", ())]


def test_ground_truth_errors(tmp_path):
    root = DataRoot(fixtures.write_data_root(str(tmp_path), eval_splits=("strong",)))
    with pytest.raises(FileNotFoundError, match=r"'zero_shot' split needs eval/zero_shot\.json"):
        splits.read_split_ground_truth(root, "zero_shot")
    with pytest.raises(FileNotFoundError, match=r"val/strong\.json"):
        splits.read_split_ground_truth(root, "strong", which="val")
    with pytest.raises(ValueError, match="which"):
        splits.read_split_ground_truth(root, "strong", which="test")
    with pytest.raises(ValueError, match="unknown split"):
        splits.read_split_ground_truth(root, "weak")
