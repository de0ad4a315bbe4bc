"""Tag readers: the record path and the columnar (pyarrow) path must give the same result."""

import json
import random
import re

import numpy as np
import pytest

from conceptmask_tf.data import tags
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.types import TaggedImage
from conceptmask_tf.errors import DataError

# Line by line: what each line must produce.
MANIFEST_LINES = [
    '{"image": "images/a.jpg", "tags": ["Sky", "Red_Car", "sky"]}',  # 1: "sky" repeats
    '',  # 2: blank, ignored
    '{"image": "images/b.jpg", "tags": []}',  # 3: no tags
    '{"image": "images/c.jpg", "tags": ["!!", "dog"], "extra": 1}',  # 4: "!!" is empty
    '{"image": "images/d.jpg", "tags": ["??"]}',  # 5: empty name, then no tags
    '{"image": "images/e.jpg", "tags": ["T-shirt", "dog", "DOG ", "Dog"]}',  # 6: 2 repeats
]
EXPECTED_RECORDS = [
    TaggedImage("images/a.jpg", ("sky", "red car")),
    TaggedImage("images/c.jpg", ("dog",)),
    TaggedImage("images/e.jpg", ("t-shirt", "dog")),
]
EXPECTED_COUNTS = {tags.SKIP_DUPLICATE: 3, tags.SKIP_NO_TAGS: 2, tags.SKIP_EMPTY_NAME: 2}


def _write(tmp_path, lines, name="tags.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _read_both(path, chunk_bytes=1 << 20, strict=False):
    record_skips = SkipCounter(path, strict=strict)
    records = tags.read_tag_manifest(path, record_skips)
    column_skips = SkipCounter(path, strict=strict)
    corpus = tags.read_tag_corpus(path, column_skips, with_images=True,
                                  chunk_bytes=chunk_bytes)
    return records, record_skips, corpus, column_skips


def test_records_are_normalised_deduplicated_and_skips_counted(tmp_path):
    path = _write(tmp_path, MANIFEST_LINES)
    skips = SkipCounter(path)
    assert tags.read_tag_manifest(path, skips) == EXPECTED_RECORDS
    assert skips.as_dict() == EXPECTED_COUNTS
    assert skips.examples[tags.SKIP_DUPLICATE] == [f"{path} [line 1]", f"{path} [line 6]",
                                                   f"{path} [line 6]"]
    assert skips.examples[tags.SKIP_NO_TAGS] == [f"{path} [line 3]", f"{path} [line 5]"]


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 40])  # one chunk; a chunk per line or two
def test_columnar_path_matches_records_and_skips(tmp_path, chunk_bytes):
    path = _write(tmp_path, MANIFEST_LINES)
    records, record_skips, corpus, column_skips = _read_both(path, chunk_bytes)
    assert corpus.to_records() == records == EXPECTED_RECORDS
    assert column_skips.as_dict() == record_skips.as_dict()
    assert dict(column_skips.examples) == dict(record_skips.examples)
    # CSR view: ids index `names`, counts are images per tag.
    assert corpus.names == ("sky", "red car", "dog", "t-shirt")
    np.testing.assert_array_equal(corpus.indptr, [0, 2, 3, 5])
    np.testing.assert_array_equal(corpus.counts(), [1, 1, 2, 1])


def test_columnar_path_matches_records_on_a_random_manifest(tmp_path):
    # Many lines with random spellings, repeats, empty names, empty lists and blank lines;
    # small chunks so that lines straddle chunk boundaries.
    rng = random.Random(0)
    words = ["sky", "Sky", "SKY ", "red car", "Red_Car", "dog", "!!", "cat", "tree", "x y"]
    lines = []
    for n in range(400):
        if rng.random() < 0.05:
            lines.append("")
            continue
        chosen = [rng.choice(words) for _ in range(rng.randint(0, 6))]
        lines.append(json.dumps({"image": f"images/{n}.jpg", "tags": chosen}))
    path = _write(tmp_path, lines)
    records, record_skips, corpus, column_skips = _read_both(path, chunk_bytes=997)
    assert corpus.to_records() == records
    assert column_skips.as_dict() == record_skips.as_dict()
    assert dict(column_skips.examples) == dict(record_skips.examples)
    assert record_skips.total > 50  # the file does exercise every skip


@pytest.mark.parametrize("bad_line, words", [
    ('{"image": "images/x.jpg", "tags": ["a"]', "malformed JSON"),
    ('["images/x.jpg", ["a"]]', "expected a JSON object"),
    ('{"tags": ["a"]}', "missing key 'image'"),
    ('{"image": "images/x.jpg"}', "missing key 'tags'"),
    ('{"image": "images/x.jpg", "tags": "a"}', "'tags' must be a list"),
    ('{"image": "images/x.jpg", "tags": null}', "'tags' must be a list"),
    ('{"image": "images/x.jpg", "tags": ["a", 3]}', "got element 3"),
    ('{"image": "images/x.jpg", "tags": ["a", null]}', "got element None"),
    ('{"image": 7, "tags": ["a"]}', "'image' must be a non-empty string"),
    ('{"image": "", "tags": ["a"]}', "'image' must be a non-empty string"),
])
@pytest.mark.parametrize("reader", ["records", "columnar"])
def test_bad_line_raises_data_error_naming_file_and_line(tmp_path, bad_line, words, reader):
    path = _write(tmp_path, MANIFEST_LINES[:2] + [bad_line] + MANIFEST_LINES[2:])
    read = tags.read_tag_manifest if reader == "records" else tags.read_tag_corpus
    with pytest.raises(DataError, match=words) as info:
        read(path)
    assert info.value.path == path
    assert info.value.record == "line 3"


@pytest.mark.parametrize("reader", ["records", "columnar"])
def test_non_utf8_line_raises_data_error(tmp_path, reader):
    path = tmp_path / "tags.jsonl"
    path.write_bytes(b'{"image": "a", "tags": ["a"]}\n{"image": "b", "tags": ["\xff"]}\n')
    read = tags.read_tag_manifest if reader == "records" else tags.read_tag_corpus
    with pytest.raises(DataError, match="not UTF-8") as info:
        read(str(path))
    assert info.value.record == "line 2"


def test_strict_mode_stops_at_the_same_first_bad_record_in_both_paths(tmp_path):
    path = _write(tmp_path, MANIFEST_LINES)
    for read in (tags.read_tag_manifest, tags.read_tag_corpus):
        with pytest.raises(DataError, match=re.escape(tags.SKIP_DUPLICATE)) as info:
            read(path, SkipCounter(path, strict=True))
        assert info.value.record == "line 1"


def test_corpus_round_trips_through_records(tmp_path):
    path = _write(tmp_path, MANIFEST_LINES)
    corpus = tags.read_tag_corpus(path, with_images=True)
    again = tags.TagCorpus.from_records(corpus.to_records())
    assert again.names == corpus.names
    np.testing.assert_array_equal(again.indptr, corpus.indptr)
    np.testing.assert_array_equal(again.tag_ids, corpus.tag_ids)
    assert tags.read_tag_corpus(path).images is None


# Open Images image-level labels: image B's rows are split by image C's row.
OI_DESCRIPTIONS = "/m/01,Car\n/m/02,Traffic_Light\n/m/03,Dog\n"
OI_LABELS = """ImageID,Source,LabelName,Confidence
imgA,verification,/m/01,1
imgA,verification,/m/02,0
imgB,verification,/m/03,1
imgC,verification,/m/01,0
imgB,crowdsource,/m/02,1
imgB,verification,/m/99,1
imgB,machine,/m/03,1
imgD,verification,/m/01,1
"""


def _write_oi(tmp_path, labels=OI_LABELS):
    descriptions = tmp_path / "classes.csv"
    descriptions.write_text(OI_DESCRIPTIONS)
    path = tmp_path / "labels.csv"
    path.write_text(labels)
    return str(path), str(descriptions)


def test_oi_labels_keep_present_labels_and_agree_between_paths(tmp_path):
    path, descriptions = _write_oi(tmp_path)
    record_skips, column_skips = SkipCounter(path), SkipCounter(path)
    records = tags.read_oi_image_labels(path, descriptions, record_skips)
    # Confidence 0 rows are verified-absent labels, not tags; imgC has none left.
    assert records == [TaggedImage("images/imgA.jpg", ("car",)),
                       TaggedImage("images/imgB.jpg", ("dog", "traffic light")),
                       TaggedImage("images/imgD.jpg", ("car",))]
    assert record_skips.as_dict() == {tags.SKIP_UNKNOWN_LABEL: 1, tags.SKIP_DUPLICATE: 1,
                                      tags.SKIP_NO_TAGS: 1}
    assert record_skips.examples[tags.SKIP_UNKNOWN_LABEL] == [f"{path} [row 7]"]
    assert record_skips.examples[tags.SKIP_NO_TAGS] == [f"{path} [ImageID imgC]"]
    corpus = tags.read_oi_label_corpus(path, descriptions, column_skips, with_images=True)
    assert corpus.to_records() == records
    assert column_skips.as_dict() == record_skips.as_dict()
    assert dict(column_skips.examples) == dict(record_skips.examples)


@pytest.mark.parametrize("reader", [tags.read_oi_image_labels, tags.read_oi_label_corpus])
@pytest.mark.parametrize("confidence", ["yes", ""])
def test_oi_labels_bad_confidence_or_header_raise(tmp_path, reader, confidence):
    path, descriptions = _write_oi(tmp_path, OI_LABELS.replace(
        "imgB,verification,/m/03,1", f"imgB,verification,/m/03,{confidence}"))
    with pytest.raises(DataError, match=f"Confidence '{confidence}'") as info:
        reader(path, descriptions)
    assert info.value.record == "row 4"
    path, descriptions = _write_oi(tmp_path, "ImageID,Source,Label,Confidence\n")
    with pytest.raises(DataError, match="missing column"):
        reader(path, descriptions)


def test_oi_verified_labels_keep_present_and_absent_labels(tmp_path):
    path, descriptions = _write_oi(tmp_path, OI_LABELS + "imgA,verification,/m/98,0\n"
                                   "imgD,verification,/m/01,0\nimgD,verification,/m/03,0\n")
    skips = SkipCounter(path)
    labels = tags.read_oi_verified_labels(path, descriptions, skips)
    # imgD says car both present and absent: dropped from both and counted; unknown MIDs
    # (/m/99 present, /m/98 absent) are counted; repeats (imgB dog) are kept once.
    assert labels == {
        "imgA": tags.VerifiedLabels(("car",), ("traffic light",)),
        "imgB": tags.VerifiedLabels(("dog", "traffic light"), ()),
        "imgC": tags.VerifiedLabels((), ("car",)),
        "imgD": tags.VerifiedLabels((), ("dog",)),
    }
    assert skips.as_dict() == {tags.SKIP_UNKNOWN_LABEL: 2, tags.SKIP_CONFLICTING_LABEL: 1}
    assert skips.examples[tags.SKIP_CONFLICTING_LABEL] == [f"{path} [ImageID imgD: car]"]
