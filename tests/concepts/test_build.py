"""The concepts step end to end: build_concepts and the conceptmask-concepts binary."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conceptmask_tf.concepts import build
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.concepts.overlap import SOURCE_MASKS, OverlapMatrix, gamma_from_overlap
from conceptmask_tf.data import coco

TAG_LINES = [
    {"image": "images/1.jpg", "tags": ["person", "face", "sky"]},
    {"image": "images/2.jpg", "tags": ["person", "face", "grass"]},
    {"image": "images/3.jpg", "tags": ["sky", "grass", "Sky"]},  # one repeat -> a skip
    {"image": "images/4.jpg", "tags": ["person", "red car"]},
]


def _rle(rows, cols, size=64):
    mask = np.zeros((size, size), np.uint8)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = 1
    rle = coco.encode_mask(mask)
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _data_root(root):
    os.makedirs(os.path.join(root, "coco"))
    with open(os.path.join(root, "tags.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(line) + "\n" for line in TAG_LINES)
    # Both images: person = left half (2048 px), face = a 16 x 16 corner inside it (256 px).
    annotations = []
    for image_id in (1, 2):
        annotations += [
            {"id": 10 * image_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
             "segmentation": _rle((0, 64), (0, 32)), "area": 2048, "bbox": [0, 0, 32, 64]},
            {"id": 10 * image_id + 1, "image_id": image_id, "category_id": 2, "iscrowd": 0,
             "segmentation": _rle((0, 16), (0, 16)), "area": 256, "bbox": [0, 0, 16, 16]}]
    data = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 64}
                       for i in (1, 2)],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "Face"}]}
    with open(os.path.join(root, "coco", "instances_train.json"), "w") as f:
        json.dump(data, f)
    return root


def _check_outputs(out_dir):
    embeddings = ConceptEmbeddings.load(out_dir)
    vocab = embeddings.vocabulary
    assert vocab.concepts[:2] == ("person", "face") and vocab.num_images == 4
    assert embeddings.vectors.shape == (5, 3)
    result = OverlapMatrix.load(os.path.join(out_dir, build.OVERLAP_FILE))
    assert result.concepts == ("person", "face")
    np.testing.assert_array_equal(result.vocab_index, [0, 1])  # rows of concepts.tsv
    # O(face, person) = 2 * 256 / (2 * 256) = 1; O(person, face) = 512 / 4096 = 0.125.
    np.testing.assert_allclose(result.overlap, [[1, 0.125], [1, 1]])
    # gamma (symmetric rule) is 0 both ways: the face lies inside the person, so they are
    # never negatives of each other (eq. 4 as printed gives gamma(person, face) = 0.875).
    np.testing.assert_allclose(result.gamma, [[0, 0], [0, 0]])
    np.testing.assert_allclose(gamma_from_overlap(result.overlap, gamma_rule="paper"),
                               [[0, 0.875], [0, 0]])
    np.testing.assert_array_equal(result.source, np.full((2, 2), SOURCE_MASKS))  # COCO only


def test_build_concepts_writes_the_three_files(tmp_path):
    root = _data_root(str(tmp_path / "root"))
    out_dir = str(tmp_path / "out")
    summary = build.build_concepts(os.path.join(root, "tags.jsonl"), out_dir, dim=3,
                                   data_root=root, overlap_source="both")
    _check_outputs(out_dir)
    assert summary.skips.as_dict() == {"tag repeated in an image": 1}
    assert "concepts V = 5, dimension D = 3" in summary.text()


def test_missing_overlap_source_is_named(tmp_path):
    root = _data_root(str(tmp_path / "root"))
    with pytest.raises(FileNotFoundError, match="oi_boxes_train.csv"):
        build.build_concepts(os.path.join(root, "tags.jsonl"), str(tmp_path / "out"), dim=3,
                             data_root=root, overlap_source="boxes")


def test_binary_runs_on_a_data_root(tmp_path):
    root = _data_root(str(tmp_path / "root"))
    out_dir = str(tmp_path / "out")
    done = subprocess.run(
        [sys.executable, "-m", "conceptmask_tf.bin.concepts", f"--data_root={root}",
         "--dim=3", f"--out_dir={out_dir}", "--noprogress"],
        capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    _check_outputs(out_dir)
    assert "1 x tag repeated in an image" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "conceptmask_tf.bin.concepts", f"--tags={root}/missing.jsonl",
         "--dim=3", f"--out_dir={out_dir}", "--noprogress"],
        capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and "missing.jsonl" in bad.stderr
