"""Skip reasons declare their own severity; the bad-record check asks the registry."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from conceptmask_tf.data import box_geometry, coco, images, open_images, skips, visual_genome
from conceptmask_tf.data.datasets import refinement as refinement_pipeline
from conceptmask_tf.data.datasets import segmentation as segmentation_pipeline
from conceptmask_tf.data.skips import Severity, SkipCounter, register_skip_reason, severity_of
from conceptmask_tf.errors import DataError
from conceptmask_tf.training import fit

FAKE_READER = '''
from conceptmask_tf.data.skips import Severity, SkipCounter, register_skip_reason

SKIP_GARBLED = register_skip_reason("garbled fake record", Severity.BAD_ANNOTATION)
SKIP_UNWANTED = register_skip_reason("unwanted fake record", Severity.EXPECTED)


def read(records, skips: SkipCounter):
    kept = []
    for i, record in enumerate(records):
        if record == "garbled":
            skips.skip(SKIP_GARBLED, "fake.txt", record=i)
        elif record == "unwanted":
            skips.skip(SKIP_UNWANTED, "fake.txt", record=i)
        else:
            kept.append(record)
    return kept
'''


@pytest.fixture
def registry():
    """The severity registry, restored after the test."""
    saved = dict(skips._SEVERITIES)
    yield skips._SEVERITIES
    skips._SEVERITIES.clear()
    skips._SEVERITIES.update(saved)


@pytest.fixture
def fake_reader(tmp_path, registry):
    """A reader module outside the package, imported the way a new reader would be."""
    (tmp_path / "fake_reader_for_skips.py").write_text(textwrap.dedent(FAKE_READER))
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("fake_reader_for_skips")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("fake_reader_for_skips", None)


def test_built_in_reasons_keep_their_severities():
    assert fit.BAD_IMAGE_FILE_REASONS == {
        images.MISSING, images.EMPTY, images.UNREADABLE, images.UNSUPPORTED, images.TRUNCATED,
        images.TOO_LARGE}
    assert fit.BAD_ANNOTATION_REASONS == {
        box_geometry.OUTSIDE, box_geometry.DEGENERATE, refinement_pipeline.NON_FINITE_BOX,
        coco.SKIP_EMPTY_MASK, coco.SKIP_EMPTY_SEGMENTATION, coco.SKIP_SHORT_POLYGON,
        segmentation_pipeline.BAD_MASK, open_images.SKIP_MISSING_IMAGE,
        visual_genome.SKIP_MISSING_IMAGE}
    for reason in (coco.SKIP_BAD_BBOX, coco.SKIP_UNKNOWN_CATEGORY, open_images.SKIP_UNKNOWN_LABEL,
                   refinement_pipeline.UNKNOWN_CONCEPT, "a reason nobody registered"):
        assert severity_of(reason) is Severity.EXPECTED and not severity_of(reason).is_bad


def test_a_new_readers_bad_reason_counts_in_the_runners_check(fake_reader):
    counter = SkipCounter("fake")
    kept = fake_reader.read(["ok", "garbled", "unwanted", "unwanted", "ok"], counter)
    assert kept == ["ok", "ok"]
    assert counter.count_with(Severity.BAD_ANNOTATION) == 1
    assert counter.bad_counts() == {fake_reader.SKIP_GARBLED: 1}
    # 1 bad record of 2 examples + 1 dropped annotation: a third of the records.
    counter.check_bad_fraction(num_examples=2, max_fraction=0.4)
    with pytest.raises(DataError, match=r"1 of 3 training records \(33\.3%\) are bad") as error:
        counter.check_bad_fraction(num_examples=2, max_fraction=0.3)
    assert "1 x garbled fake record (e.g. fake.txt [1])" in str(error.value)
    assert "unwanted" not in str(error.value)
    assert fake_reader.SKIP_GARBLED in fit.BAD_ANNOTATION_REASONS


def test_expected_reasons_never_stop_a_run(fake_reader):
    counter = SkipCounter("fake")
    fake_reader.read(["unwanted"] * 10, counter)
    counter.check_bad_fraction(num_examples=1, max_fraction=0.0)
    assert counter.bad_counts() == {}


def test_a_reason_has_one_severity(registry):
    assert register_skip_reason(images.MISSING, Severity.BAD_IMAGE_FILE) == images.MISSING
    with pytest.raises(ValueError, match="already registered as 'bad image file'"):
        register_skip_reason(images.MISSING, Severity.EXPECTED)
    assert severity_of(images.MISSING) is Severity.BAD_IMAGE_FILE
