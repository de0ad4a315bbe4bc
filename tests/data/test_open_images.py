"""Open Images readers: class descriptions and box CSV, values from the fixture by hand."""

import os

import pytest

from conceptmask_tf.data import open_images
from conceptmask_tf.data.box_geometry import DEGENERATE, OUTSIDE
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.types import BoxedImage, ConceptBox
from conceptmask_tf.errors import DataError

try:  # tests/ as a package
    from tests.data import fixtures
except ImportError:  # pytest's rootdir-relative import (no __init__.py)
    import fixtures

CLASSES = {"/m/01": "car", "/m/02": "traffic light", "/m/03": "person adult"}
# From fixtures.OI_ROWS: rows 1, 2 (clipped) and 7 of img_a, row 3 of img_b, row 9 of img_e.
IMG_A_BOXES = (ConceptBox("car", 0.1, 0.2, 0.5, 0.6),
               ConceptBox("traffic light", 0.0, 0.5, 0.3, 1.0),
               ConceptBox("car", 0.6, 0.7, 0.9, 0.8))
IMG_B_BOXES = (ConceptBox("person adult", 0.0, 0.0, 1.0, 1.0),)
IMG_E_BOXES = (ConceptBox("car", 0.3, 0.3, 0.4, 0.4),)


def test_class_descriptions_without_and_with_header(tmp_path):
    path = fixtures.write_oi_class_descriptions(str(tmp_path))
    assert open_images.read_class_descriptions(path) == CLASSES
    path = fixtures.write_oi_class_descriptions(str(tmp_path), header=True, name="h.csv")
    assert open_images.read_class_descriptions(path) == CLASSES


@pytest.mark.parametrize("text, line, words", [
    ("/m/01,Car\n/m/02\n", "line 2", "expected 2 fields"),
    ("/m/01,Car,extra\n", "line 1", "expected 2 fields"),
    ("/m/01,Car\n,Bus\n", "line 2", "empty LabelName"),
    ("/m/01,Car\n/m/02,???\n", "line 2", "no word characters"),
    ("/m/01,Car\n/m/01,Bus\n", "line 2", "two names"),
])
def test_bad_class_descriptions_name_the_line(tmp_path, text, line, words):
    path = tmp_path / "classes.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=words) as info:
        open_images.read_class_descriptions(str(path))
    assert info.value.path == str(path) and info.value.record == line


def test_boxes_grouped_per_image_clipped_and_bad_rows_skipped(tmp_path):
    path = fixtures.write_oi_boxes(str(tmp_path))
    skips = SkipCounter()
    images = open_images.read_oi_boxes(path, CLASSES, skips=skips)
    assert images == [BoxedImage("images/img_a.jpg", IMG_A_BOXES),
                      BoxedImage("images/img_b.jpg", IMG_B_BOXES),
                      BoxedImage("images/img_e.jpg", IMG_E_BOXES)]
    assert skips.as_dict() == {open_images.SKIP_UNKNOWN_LABEL: 1, DEGENERATE: 2, OUTSIDE: 1,
                               open_images.SKIP_ZERO_CONFIDENCE: 1}
    assert skips.examples[open_images.SKIP_UNKNOWN_LABEL] == [
        f"{path} [row 4 (ImageID img_b), LabelName /m/99]"]
    assert skips.examples[DEGENERATE] == [f"{path} [row 5 (ImageID img_c)]",
                                          f"{path} [row 10 (ImageID img_c)]"]
    assert skips.examples[OUTSIDE] == [f"{path} [row 6 (ImageID img_c)]"]
    assert skips.examples[open_images.SKIP_ZERO_CONFIDENCE] == [f"{path} [row 8 (ImageID img_d)]"]


def test_image_files_resolved_under_image_dir(tmp_path):
    path = fixtures.write_oi_boxes(str(tmp_path))
    # No file for img_c, img_d (all their rows are skipped anyway) and img_e.
    files = ["img_a.jpg", "img_a.png", "img_b.PNG", "notes.txt"]
    image_dir = fixtures.touch_files(str(tmp_path / "images"), files)
    skips = SkipCounter()
    images = open_images.read_oi_boxes(path, CLASSES, image_prefix="imgs", image_dir=image_dir,
                                       skips=skips)
    # img_a: .jpg preferred over .png; img_b: upper-case extension; img_e: a counted skip
    # (img_c and img_d lost their rows already: not counted twice).
    assert [i.image for i in images] == ["imgs/img_a.jpg", "imgs/img_b.PNG"]
    assert skips.counts[open_images.SKIP_MISSING_IMAGE] == 1
    assert skips.examples[open_images.SKIP_MISSING_IMAGE] == [f"{path} [ImageID img_e]"]


def test_optional_columns_may_be_missing_and_reordered(tmp_path):
    columns = ["XMin", "YMin", "XMax", "YMax", "ImageID", "LabelName"]  # no Confidence, ...
    path = fixtures.write_oi_boxes(str(tmp_path), columns=columns)
    skips = SkipCounter()
    images = open_images.read_oi_boxes(path, CLASSES, skips=skips)
    # Without a Confidence column row 8 (img_d) is a positive box.
    assert [i.image for i in images] == ["images/img_a.jpg", "images/img_b.jpg",
                                         "images/img_d.jpg", "images/img_e.jpg"]
    assert images[0].boxes == IMG_A_BOXES
    assert open_images.SKIP_ZERO_CONFIDENCE not in skips.counts


def test_header_only_file_gives_no_images(tmp_path):
    path = fixtures.write_oi_boxes(str(tmp_path), rows=[])
    assert open_images.read_oi_boxes(path, CLASSES) == []


def test_strict_counter_turns_the_first_skip_into_an_error(tmp_path):
    path = fixtures.write_oi_boxes(str(tmp_path))
    with pytest.raises(DataError, match="LabelName not in the class descriptions") as info:
        open_images.read_oi_boxes(path, CLASSES, skips=SkipCounter(strict=True))
    assert info.value.record == "row 4 (ImageID img_b), LabelName /m/99"


def _csv(tmp_path, text):
    path = tmp_path / "boxes.csv"
    path.write_text(text)
    return str(path)


HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax\n"
GOOD = "a,x,/m/01,1,0.1,0.2,0.1,0.2\n"


@pytest.mark.parametrize("text, record, words", [
    ("", "line 1", "empty file"),
    ("ImageID,LabelName,XMin,XMax,YMin\n" + "a,/m/01,0.1,0.2,0.1\n", None,
     "missing required column(s) YMax"),
    (HEADER + GOOD + "b,x,/m/01,1,0.1,abc,0.1,0.2\n", "row 2 (ImageID b)", "XMax 'abc'"),
    (HEADER + GOOD + GOOD + "c,x,/m/01,1,0.1,0.2\n", "row 3", "expected 8 fields, found 6"),
    (HEADER + GOOD + "b,x,/m/01,1,0.1,0.2,,0.2\n", "row 2 (ImageID b)", "YMin is empty"),
    (HEADER + GOOD + "b,x,/m/01,1,0.1,inf,0.1,0.2\n", "row 2 (ImageID b)", "XMax is empty"),
    (HEADER + GOOD + "\n" + ",x,/m/01,1,0.1,0.2,0.1,0.2\n", "row 2", "empty ImageID"),
    (HEADER + GOOD + "b,x,,1,0.1,0.2,0.1,0.2\n", "row 2", "empty LabelName"),
])
def test_malformed_csv_raises_naming_file_and_row(tmp_path, text, record, words):
    path = _csv(tmp_path, text)
    with pytest.raises(DataError) as info:
        open_images.read_oi_boxes(path, CLASSES)
    assert info.value.path == path and info.value.record == record
    assert words in str(info.value)


def test_rows_of_an_image_spread_over_csv_blocks_are_grouped_in_file_order(tmp_path):
    # ~1.8 MB: pyarrow parses it in several blocks; image k has rows k, k + 10000, ...
    rows = "".join(f"img{i % 10_000},x,/m/0{1 + i % 3},1,0.1,0.5,0.2,0.6\n"
                   for i in range(50_000))
    path = _csv(tmp_path, HEADER + rows)
    assert os.path.getsize(path) > 1 << 20
    images = open_images.read_oi_boxes(path, CLASSES)
    assert len(images) == 10_000 and all(len(i.boxes) == 5 for i in images)
    assert images[3].image == "images/img3.jpg"
    assert [b.concept for b in images[0].boxes] == ["car", "traffic light", "person adult",
                                                    "car", "traffic light"]


def test_missing_csv_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_images.read_oi_boxes(os.path.join(str(tmp_path), "nope.csv"), CLASSES)
