"""Concepts whose vectors no stage can serve: zero vectors and near-identical groups."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conceptmask_tf.concepts import diagnostics
from conceptmask_tf.concepts.build import build_concepts


def test_zero_and_near_identical_vectors_are_found_and_grouped():
    names = ["sky", "outdoor", "cloud", "dog", "always", "cat"]
    vectors = np.array([
        [1.0, 0.0, 0.0],
        [0.99, 0.05, 0.0],   # outdoor ~ sky: cosine 0.9987
        [0.96, 0.28, 0.0],   # cloud ~ outdoor (0.9634) but ~ sky only 0.96: one group
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 0.01],    # norm 0.01 < 0.05 x median norm (1.0): near zero
        [0.0, 0.6, 0.8],     # cat vs dog 0.6: apart
    ])
    found = diagnostics.vector_diagnostics(names, vectors)
    assert found["zero"] == ["always"]
    assert found["near_identical"] == [["sky", "outdoor", "cloud"]]
    assert [p[:2] for p in found["pairs"]] == [["sky", "outdoor"], ["outdoor", "cloud"],
                                               ["sky", "cloud"]]
    assert found["pairs"][0][2] == pytest.approx(0.99 / np.hypot(0.99, 0.05), abs=1e-4)
    flags = diagnostics.concept_flags(found)
    assert flags == {"always": "zero vector", "sky": "≈ outdoor, cloud",
                     "outdoor": "≈ sky, cloud", "cloud": "≈ sky, outdoor"}
    lines = diagnostics.summary_lines(found)
    assert "1 concept(s) with a zero or near-zero vector" in lines[0] and "always" in lines[0]
    assert "{sky, outdoor, cloud}" in lines[1]


def test_blocks_give_the_same_pairs_as_one_matrix(monkeypatch):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 8))
    vectors = np.concatenate([base, base[:10] + 0.01 * rng.normal(size=(10, 8))])
    names = [f"c{i}" for i in range(len(vectors))]
    whole = diagnostics.vector_diagnostics(names, vectors)
    monkeypatch.setattr(diagnostics, "_BLOCK", 7)
    assert diagnostics.vector_diagnostics(names, vectors) == whole
    assert len(whole["near_identical"]) == 10  # each copy with its original


def test_nothing_is_flagged_for_distinct_vectors():
    found = diagnostics.vector_diagnostics(["a", "b"], np.eye(2))
    assert found["zero"] == [] and found["near_identical"] == []
    assert diagnostics.summary_lines(found) == []


def test_build_writes_the_file_and_warns_about_a_tag_in_every_image(tmp_path):
    # "outdoor" tags every image: its PMI row is 0, so is its vector. "wheel" always comes
    # with "car" and nothing else does: their vectors coincide.
    lines = []
    for i in range(40):
        tags = ["outdoor", "car", "wheel"] if i % 2 else ["outdoor", ["dog", "cat", "tree"][i % 3]]
        lines.append(json.dumps({"image": f"images/{i}.jpg", "tags": tags}))
    tags_path = tmp_path / "tags.jsonl"
    tags_path.write_text("\n".join(lines) + "\n")
    summary = build_concepts(str(tags_path), str(tmp_path / "out"), dim=4)
    written = diagnostics.load_diagnostics(str(tmp_path / "out"))
    assert written == json.loads(json.dumps(summary.diagnostics))
    assert written["zero"] == ["outdoor"]
    assert ["car", "wheel"] in [sorted(g) for g in written["near_identical"]]
    text = summary.text()
    assert "outdoor" in text and "{car, wheel}" in text.replace("{wheel, car}", "{car, wheel}")
    assert os.path.exists(tmp_path / "out" / diagnostics.DIAGNOSTICS_FILE)
    assert diagnostics.load_diagnostics(str(tmp_path)) is None  # no file: None
