"""Same seed and flags -> byte-identical files; other seeds differ; safe output folder."""

import dataclasses
import hashlib
import os

import pytest

from conceptmask_tf.data.world import WorldConfig, generate_world

CONFIG = WorldConfig(seed=11, num_images=12, image_size=48, num_eval_images=6,
                     min_eval_positives=1, num_phrases=4)


def _digest(root):
    """{relative path: sha256} of every file under root."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_same_config_is_byte_identical_and_other_seed_differs(tmp_path):
    generate_world(CONFIG, str(tmp_path / "a"), progress=False)
    generate_world(CONFIG, str(tmp_path / "b"), progress=False)
    generate_world(dataclasses.replace(CONFIG, seed=12), str(tmp_path / "c"), progress=False)
    a, b, c = (_digest(tmp_path / n) for n in "abc")
    assert a == b
    assert len(a) > 20
    shared = a.keys() & c.keys()
    assert all(a[k] != c[k] for k in shared if k.startswith("images/"))
    assert a["splits.json"] != c["splits.json"]


def test_png_and_rle_options(tmp_path):
    config = dataclasses.replace(CONFIG, image_format="png", mask_format="rle", num_images=6)
    generate_world(config, str(tmp_path / "w"), progress=False)
    images = os.listdir(tmp_path / "w" / "images")
    assert images and all(name.endswith(".png") for name in images)
    with open(tmp_path / "w" / "coco" / "instances_train.json") as f:
        text = f.read()
    assert '"counts":"' in text and '"segmentation":[[' not in text


def test_refuses_to_overwrite_unless_asked(tmp_path):
    config = dataclasses.replace(CONFIG, num_images=4)
    out = str(tmp_path / "w")
    generate_world(config, out, progress=False)
    with pytest.raises(FileExistsError, match="not empty"):
        generate_world(config, out, progress=False)
    generate_world(dataclasses.replace(config, seed=5), out, overwrite=True, progress=False)
    with open(os.path.join(out, "world.json")) as f:
        assert '"seed": 5' in f.read()
    assert not os.path.exists(out + ".tmp") and not os.path.exists(out + ".old")


def test_never_overwrites_a_folder_that_is_not_a_world(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a concept world"):
        generate_world(CONFIG, str(out), overwrite=True, progress=False)
    assert (out / "thesis.txt").read_text() == "keep me"


def test_empty_folder_is_fine_and_failure_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "empty"
    out.mkdir()
    generate_world(dataclasses.replace(CONFIG, num_images=3), str(out), progress=False)
    assert (out / "splits.json").is_file()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("conceptmask_tf.data.world.writer.WorldFiles.write", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_world(CONFIG, str(tmp_path / "broken"), progress=False)
    assert not (tmp_path / "broken").exists() and not (tmp_path / "broken.tmp").exists()


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="image_format"):
        WorldConfig(image_format="gif")
    with pytest.raises(ValueError, match="val_fraction"):
        WorldConfig(val_fraction=1.0)
