"""Choice of example pictures by kind of concept, and the files written."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image, ImageFont

from conceptmask_tf import visualization
from conceptmask_tf.evaluation.eval_set import load_eval_set
from conceptmask_tf.evaluation.pictures import (
    SHEET_FILE,
    SHEET_GROUP,
    choose_pictures,
    write_pictures,
)
from tests.evaluation import eval_fixtures as fx


@pytest.fixture
def eval_set(tmp_path):
    return load_eval_set(fx.write_data_root(str(tmp_path / "root")), fx.embeddings())


def _summary(choices):
    return [(c.group, c.pair.concept, c.pair.split, os.path.basename(c.image.image))
            for c in choices]


def test_pictures_are_grouped_by_supercategory_and_weak_or_unseen_split(eval_set):
    # Candidates by split, then image: objects = dog (strong img0, img1), cat (weak_box);
    # stuff = sky (weak_box img0, img2), cloud (zero_shot); phrases = red car (weak_image);
    # weak = red car and unseen = cloud, both already drawn (a pair is drawn once) with 2
    # per group; with 1 per group stuff takes sky, so cloud is left for unseen.
    assert _summary(choose_pictures(eval_set, per_group=2)) == [
        ("objects", "dog", "strong", "img0.png"), ("objects", "cat", "weak_box", "img1.png"),
        ("stuff", "sky", "weak_box", "img0.png"), ("stuff", "cloud", "zero_shot", "img2.png"),
        ("phrases", "red car", "weak_image", "img1.png")]
    assert _summary(choose_pictures(eval_set, per_group=1)) == [
        ("objects", "dog", "strong", "img0.png"), ("stuff", "sky", "weak_box", "img0.png"),
        ("phrases", "red car", "weak_image", "img1.png"),
        ("unseen", "cloud", "zero_shot", "img2.png")]


def test_categories_without_known_supercategory_group_by_split(eval_set):
    eval_set.supercategories = {key: None for key in eval_set.supercategories}
    groups = [c.group for c in choose_pictures(eval_set, per_group=1)]
    assert groups == ["strong", "weak_box", "weak", "unseen"]


def test_written_pictures_show_four_tiles_with_captions(eval_set, tmp_path):
    model = fx.FakeModel(eval_set, fx.oracle_rule)

    def predict(inputs):
        outputs = model(inputs)
        return {**outputs, "attention": outputs["mask_probs"][:, :, ::4, ::4]}

    choices = choose_pictures(eval_set, per_group=1)
    pictures = write_pictures(predict, eval_set, choices, str(tmp_path / "report"))
    assert [p.group for p in pictures] == [c.group for c in choices] + [SHEET_GROUP]
    assert pictures[-1].path == os.path.join("pictures", SHEET_FILE)
    font = ImageFont.load_default()
    lines = max(len(visualization.wrap_caption(f"{c.group}: {c.pair.concept} ({c.pair.split})",
                                                font, 124)) for c in choices)
    assert lines >= 2  # "objects: dog (strong)" and the like do not fit one 128-px tile
    with Image.open(tmp_path / "report" / pictures[-1].path) as all_in_one:
        # One 128-px row (plus its caption band, as tall as the longest caption, and a 4-px
        # gap) per picture, four tiles wide.
        band = visualization.CAPTION_LINE * lines + 2
        assert all_in_one.size == (4 * 132 + 4, len(choices) * (128 + band + 4) + 4)
    first = pictures[0]
    assert first.path == os.path.join("pictures", "00_objects_dog.png")
    assert first.caption.startswith("dog (strong split, images/img0.png)")
    assert "IoU 1.00" in first.caption
    with Image.open(tmp_path / "report" / first.path) as sheet:
        width, height = sheet.size
        pixels = np.asarray(sheet.convert("RGB"))
    assert width == 4 * 164 + 4 and height > 160  # four 160-px tiles with 4-px gaps
    assert pixels.std() > 0
