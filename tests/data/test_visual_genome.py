"""Visual Genome reader: name normalisation, pixel -> normalised boxes, bad records."""

import copy

import pytest

from conceptmask_tf.data import visual_genome as vg
from conceptmask_tf.data.box_geometry import DEGENERATE, OUTSIDE
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.types import BoxedImage, ConceptBox
from conceptmask_tf.errors import DataError

try:  # tests/ as a package
    from tests.data import fixtures
except ImportError:  # pytest's rootdir-relative import (no __init__.py)
    import fixtures

# Worked out in fixtures.py (image 1 is 200 x 100, image 2 is 50 x 50).
IMAGE_1 = BoxedImage("images/1.jpg", (
    ConceptBox("tree", 0.1, 0.1, 0.6, 0.6),      # 20/200, 10/100, 120/200, 60/100
    ConceptBox("tree", 0.75, 0.5, 1.0, 1.0),     # 150/200, 50/100, clipped from 1.25, 1.5
    ConceptBox("plant", 0.75, 0.5, 1.0, 1.0),
    ConceptBox("glasses", 0.0, 0.0, 1.0, 1.0),
    ConceptBox("grass", 0.0, 0.0, 1.0, 1.0)), width=200, height=100)
IMAGE_2_MAN = BoxedImage("images/2.png", (ConceptBox("man", 0.1, 0.2, 0.5, 0.5),),
                         width=50, height=50)


@pytest.mark.parametrize("name, expected", [
    ("The Trees ", "trees"), ("a Plant", "plant"), ("an_apple", "apple"),
    ("the", "the"), ("theatre", "theatre"), ("A-frame", "a-frame"), ("!!!", ""),
])
def test_normalize_vg_name(name, expected):
    assert vg.normalize_vg_name(name) == expected


def test_aliases_apply_after_article_removal():
    aliases = vg.normalize_aliases({"Men": "Man", "tee shirt": "T-Shirt"})
    assert vg.normalize_vg_name("the men", aliases) == "man"
    assert vg.normalize_vg_name("Tee_Shirt", aliases) == "t-shirt"


def test_plural_folds_only_to_singulars_in_the_vocabulary():
    vocabulary = ["tree", "trees", "grass", "gras", "glasses", "bus", "red cars", "red car",
                  "cars"]
    assert vg.plural_folds(vocabulary) == {"trees": "tree", "red cars": "red car"}


def test_objects_become_normalised_boxes_one_per_name(tmp_path):
    skips = SkipCounter()
    images = vg.read_vg_objects(*fixtures.write_vg(str(tmp_path)), skips=skips,
                                aliases={"men": "man"})
    assert images == [IMAGE_1, IMAGE_2_MAN]
    assert skips.as_dict() == {DEGENERATE: 1, vg.SKIP_EMPTY_NAME: 1, OUTSIDE: 1,
                               vg.SKIP_UNKNOWN_IMAGE: 1}
    objects = str(tmp_path / "vg_objects.json")
    assert skips.examples[DEGENERATE] == [f"{objects} [image_id 1, object_id 12]"]
    assert skips.examples[OUTSIDE] == [f"{objects} [image_id 1, object_id 14]"]
    assert skips.examples[vg.SKIP_EMPTY_NAME] == [f"{objects} [image_id 1, object_id 13, "
                                                  f"name '!!!']"]
    assert skips.examples[vg.SKIP_UNKNOWN_IMAGE] == [f"{objects} [image_id 3]"]


def test_without_aliases_names_stay(tmp_path):
    images = vg.read_vg_objects(*fixtures.write_vg(str(tmp_path)), image_prefix="vg",
                                skips=SkipCounter())
    assert images[1].image == "vg/2.png" and images[1].concepts == ("men",)


def test_plural_folding_can_be_turned_off(tmp_path):
    images = vg.read_vg_objects(*fixtures.write_vg(str(tmp_path)), skips=SkipCounter(),
                                fold_plurals=False)
    assert images[0].concepts == ("trees", "tree", "plant", "glasses", "grass")


def test_names_folding_to_one_concept_give_one_box(tmp_path):
    objects = [{"image_id": 2, "objects": [
        {"object_id": 1, "x": 0, "y": 0, "w": 25, "h": 50, "names": ["dog", "Dogs", "the dog"]},
        {"object_id": 2, "x": 0, "y": 0, "w": 25, "h": 50, "names": ["dog"]}]}]
    images = vg.read_vg_objects(*fixtures.write_vg(str(tmp_path), objects=objects))
    assert images[0].boxes == (ConceptBox("dog", 0.0, 0.0, 0.5, 1.0),)


def test_real_file_variants_id_and_name(tmp_path):
    objects = [{"id": 2, "objects": [{"object_id": 1, "x": 5, "y": 10, "w": 20, "h": 15,
                                      "name": "Man"}]}]
    image_data = [{"id": 2, "width": 50, "height": 50, "url": "http://x/y/2.png"}]
    images = vg.read_vg_objects(*fixtures.write_vg(str(tmp_path), objects, image_data))
    assert images == [IMAGE_2_MAN]


def test_missing_image_files_are_counted_skips(tmp_path):
    image_dir = fixtures.touch_files(str(tmp_path / "images"), ["2.png"])
    skips = SkipCounter()
    images = vg.read_vg_objects(*fixtures.write_vg(str(tmp_path)), skips=skips,
                                image_dir=image_dir)
    assert [i.image for i in images] == ["images/2.png"]
    assert skips.counts[vg.SKIP_MISSING_IMAGE] == 1
    assert skips.examples[vg.SKIP_MISSING_IMAGE] == [
        f"{tmp_path / 'vg_objects.json'} [image_id 1, images/1.jpg]"]


def test_strict_counter_raises_on_the_first_skip(tmp_path):
    # Names are checked while reading, boxes after all names are known (plural folds).
    with pytest.raises(DataError, match="name with no word characters") as info:
        vg.read_vg_objects(*fixtures.write_vg(str(tmp_path)), skips=SkipCounter(strict=True))
    assert info.value.record == "image_id 1, object_id 13, name '!!!'"
    objects = _objects(lambda o: (o[0]["objects"].pop(3), o.pop(2)))  # no object 13, image 3
    with pytest.raises(DataError, match="degenerate box") as info:
        vg.read_vg_objects(*fixtures.write_vg(str(tmp_path), objects),
                           skips=SkipCounter(strict=True))
    assert info.value.record == "image_id 1, object_id 12"


def _objects(mutate):
    objects = copy.deepcopy(fixtures.VG_OBJECTS)
    mutate(objects)
    return objects


def _image_data(mutate):
    image_data = copy.deepcopy(fixtures.VG_IMAGE_DATA)
    mutate(image_data)
    return image_data


@pytest.mark.parametrize("objects, image_data, which, record, words", [
    (_objects(lambda o: o[0]["objects"][0].pop("x")), None, "objects",
     "image_id 1, object_id 10", "'x'"),
    (_objects(lambda o: o[0]["objects"][0].update(w="100")), None, "objects",
     "image_id 1, object_id 10", "'w' must be a number"),
    (_objects(lambda o: o[0]["objects"][0].update(x=True)), None, "objects",
     "image_id 1, object_id 10", "'x' must be a number"),
    (_objects(lambda o: o[0]["objects"][1].update(h=float("nan"))), None, "objects",
     "image_id 1, object_id 11", "must be finite"),
    (_objects(lambda o: o[0]["objects"][0].update(names="tree")), None, "objects",
     "image_id 1, object_id 10", "'names' must be a list"),
    (_objects(lambda o: o[0]["objects"][0].update(names=[3])), None, "objects",
     "image_id 1, object_id 10", "names must be strings"),
    (_objects(lambda o: o[0]["objects"][1].update(object_id=10)), None, "objects",
     "image_id 1, object_id 10", "duplicate object_id"),
    (_objects(lambda o: o[0]["objects"][0].pop("object_id")), None, "objects",
     "image_id 1, objects[0]", "'object_id'"),
    (_objects(lambda o: o[1].update(image_id=1)), None, "objects", "image_id 1",
     "duplicate image_id"),
    (_objects(lambda o: o[1].pop("objects")), None, "objects", "image_id 2", "'objects'"),
    (_objects(lambda o: o[1].pop("image_id")), None, "objects", "[1]", "'image_id'"),
    (_objects(lambda o: o.__setitem__(0, "oops")), None, "objects", "[0]", "must be an object"),
    (None, _image_data(lambda d: d[0].pop("width")), "image_data", "image_id 1", "'width'"),
    (None, _image_data(lambda d: d[0].update(height=0)), "image_data", "image_id 1",
     "'height' must be a positive int"),
    (None, _image_data(lambda d: d[0].pop("url")), "image_data", "image_id 1", "'url'"),
    (None, _image_data(lambda d: d[1].update(image_id=1)), "image_data", "image_id 1",
     "duplicate image_id"),
    (None, _image_data(lambda d: d[1].update(file="images/")), "image_data", "image_id 2",
     "names no file"),
])
def test_malformed_records_raise_naming_file_and_record(tmp_path, objects, image_data, which,
                                                        record, words):
    paths = dict(zip(("objects", "image_data"),
                     fixtures.write_vg(str(tmp_path), objects, image_data), strict=True))
    with pytest.raises(DataError) as info:
        vg.read_vg_objects(paths["objects"], paths["image_data"])
    assert info.value.path == paths[which] and info.value.record == record
    assert words in str(info.value)


def test_unparseable_and_wrong_top_level_json(tmp_path):
    objects_path, image_data_path = fixtures.write_vg(str(tmp_path))
    with open(objects_path, "w") as f:
        f.write("[{")
    with pytest.raises(DataError, match="not valid JSON") as info:
        vg.read_vg_objects(objects_path, image_data_path)
    assert info.value.path == objects_path
    fixtures.write_json(image_data_path, {"image_id": 1})
    with pytest.raises(DataError, match="must be a list") as info:
        vg.read_vg_objects(objects_path, image_data_path)
    assert info.value.path == image_data_path
