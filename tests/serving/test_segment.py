"""conceptmask-segment: image modes, output files, JSON, bad input, the CLI end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conceptmask_tf.errors import DataError, UnknownConceptError
from conceptmask_tf.serving.runtimes import load_runner
from conceptmask_tf.serving.segment import (
    SUMMARY_FILE,
    concept_slug,
    read_image,
    resolve_concepts,
    segment,
    segment_images,
    unique,
)
from tests.serving.conftest import MAX_SIDE, concept_embeddings

pytest_plugins = ["tests.serving.convert_fixtures"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXIF_ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def runner(tiny_saved_model):
    """The conftest's checked export (vocabulary signatures, max_image_side MAX_SIDE)."""
    return load_runner(tiny_saved_model)


def _pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)


def _write_modes(directory) -> dict[str, tuple[str, tuple[int, int]]]:
    """name -> (file, upright (height, width)) of images in several modes."""
    rgb = _pixels(24, 40)
    files = {}
    grey = directory / "grey.png"
    Image.fromarray(rgb[..., 0]).save(grey)
    files["grey"] = (str(grey), (24, 40))
    rgba = directory / "rgba.png"
    Image.fromarray(np.dstack([rgb, np.full((24, 40), 7, np.uint8)])).save(rgba)
    files["rgba"] = (str(rgba), (24, 40))
    palette = directory / "palette.png"
    Image.fromarray(rgb).quantize(16).save(palette)
    files["palette"] = (str(palette), (24, 40))
    sixteen = directory / "sixteen.png"
    Image.fromarray(np.arange(24 * 40, dtype=np.uint16).reshape(24, 40) * 68).save(sixteen)
    files["sixteen"] = (str(sixteen), (24, 40))
    rotated = directory / "rotated.jpg"
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # displayed turned 90 degrees clockwise
    Image.fromarray(rgb).save(rotated, exif=exif, quality=95)
    files["exif_rotated"] = (str(rotated), (40, 24))  # stored 24 x 40, upright 40 x 24
    return files


def test_read_image_gives_upright_rgb_of_every_mode(tmp_path):
    files = _write_modes(tmp_path)
    for name, (path, (height, width)) in files.items():
        image = read_image(path)
        assert image.shape == (height, width, 3) and image.dtype == np.uint8, name
    stored = _pixels(24, 40)
    grey = read_image(files["grey"][0])
    np.testing.assert_array_equal(grey, np.repeat(stored[..., :1], 3, axis=-1))
    np.testing.assert_array_equal(read_image(files["rgba"][0]), stored)  # alpha dropped
    with Image.open(files["palette"][0]) as image:
        np.testing.assert_array_equal(read_image(files["palette"][0]),
                                      np.asarray(image.convert("RGB")))
    # 16 bit: value v -> round(v / 257), not clipped at 255 (PIL's convert("RGB") would).
    sixteen = read_image(files["sixteen"][0])[..., 0]
    expected = np.round(np.arange(24 * 40).reshape(24, 40) * 68 / 257.0)
    np.testing.assert_array_equal(sixteen, expected)
    assert sixteen.max() == 254
    # EXIF orientation 6: the stored pixels turned clockwise.
    with Image.open(files["exif_rotated"][0]) as image:
        raw = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(read_image(files["exif_rotated"][0]), np.rot90(raw, k=-1))


@pytest.mark.slow
def test_masks_overlays_and_json_for_every_mode(runner, tmp_path):
    files = _write_modes(tmp_path)
    out = tmp_path / "out"
    concepts = ["dog", "Red car"]
    result = segment_images(runner, [p for p, _ in files.values()], concepts,
                            runner.concept_vectors(concepts), str(out), progress=False)
    assert [entry["folder"] for entry in result["images"]] == [
        "grey", "rgba", "palette", "sixteen", "rotated"]
    for entry, (path, (height, width)) in zip(result["images"], files.values()):
        assert (entry["image"], entry["height"], entry["width"]) == (path, height, width)
        outputs = runner(read_image(path), runner.concept_vectors(concepts))
        assert [c["concept"] for c in entry["concepts"]] == concepts
        for k, item in enumerate(entry["concepts"]):
            slug = ["dog", "red_car"][k]
            assert item["mask"] == f"{entry['folder']}/{slug}_mask.png"
            assert item["overlay"] == f"{entry['folder']}/{slug}_overlay.png"
            assert item["presence"] == pytest.approx(float(outputs["presence"][k]), abs=1e-6)
            with Image.open(out / item["mask"]) as mask:
                assert mask.mode == "L" and mask.size == (width, height)
                np.testing.assert_array_equal(np.asarray(mask), outputs["masks"][k] * 255)
            assert item["mask_fraction"] == pytest.approx(outputs["masks"][k].mean())
            with Image.open(out / item["overlay"]) as overlay:
                assert overlay.mode == "RGB" and overlay.size == (width, height)
    with open(out / SUMMARY_FILE) as f:
        assert json.load(f) == result
    assert result["runtime"] == "saved_model" and result["concepts"] == concepts


@pytest.mark.slow
def test_repeated_names_and_threshold(runner, tmp_path):
    os.makedirs(tmp_path / "a")
    os.makedirs(tmp_path / "b")
    Image.fromarray(_pixels(20, 30, 1)).save(tmp_path / "a" / "photo.png")
    Image.fromarray(_pixels(30, 20, 2)).save(tmp_path / "b" / "photo.jpg")
    images = [str(tmp_path / "a" / "photo.png"), str(tmp_path / "b" / "photo.jpg")]
    concepts = ["Red car", "dog", "red_car"]
    out = tmp_path / "out"
    result = segment_images(runner, images, concepts, runner.concept_vectors(concepts),
                            str(out), threshold=0.3, progress=False)
    assert sorted(os.listdir(out)) == ["photo", "photo_2", SUMMARY_FILE]
    assert sorted(os.listdir(out / "photo")) == sorted(
        f"{slug}_{kind}.png" for slug in ("red_car", "dog", "red_car_2")
        for kind in ("mask", "overlay"))
    probs = runner(read_image(images[1]), runner.concept_vectors(concepts))["mask_probs"]
    with Image.open(out / "photo_2" / "dog_mask.png") as mask:
        np.testing.assert_array_equal(np.asarray(mask) > 0, probs[1] >= 0.3)
    assert result["threshold"] == 0.3


def test_concept_slugs_and_unique_names():
    assert [concept_slug(c) for c in ["Red car", "t-shirt", "O'Brien's dog", "***"]] == [
        "red_car", "t-shirt", "obriens_dog", "concept"]
    assert unique(["a", "a_2", "a", "segments.json"], reserved=["segments.json"]) == [
        "a", "a_2", "a_3", "segments.json_2"]


@pytest.mark.slow
def test_word_vector_files_and_concepts_dirs(runner, tmp_path):
    vectors = concept_embeddings().vectors[:3]
    np.save(tmp_path / "ok.npy", vectors.astype(np.float64))
    names, got = resolve_concepts(runner, word_vectors=str(tmp_path / "ok.npy"))
    assert names == ["vector_0", "vector_1", "vector_2"]
    np.testing.assert_array_equal(got, vectors)
    bad = {"wrong_d.npy": (np.ones((2, 5), np.float32), "D = 5 columns, the model takes D = 8"),
           "empty.npy": (np.ones((0, 8), np.float32), r"K = 0"),
           "flat.npy": (np.ones(8, np.float32), r"float32 \[K, 8\], got float32 \[8\]"),
           "ints.npy": (np.ones((2, 8), np.int64), "got int64"),
           "nan.npy": (np.array([[0.0] * 8, [np.inf] * 8], np.float32), r"rows \[1\]")}
    for name, (array, message) in bad.items():
        np.save(tmp_path / name, array)
        with pytest.raises(DataError, match=f"{name}: .*{message}"):
            resolve_concepts(runner, word_vectors=str(tmp_path / name))
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(DataError, match="text.npy: not a readable .npy"):
        resolve_concepts(runner, word_vectors=str(tmp_path / "text.npy"))

    # A concepts dir overrides the SavedModel's vocabulary; one of another D is refused.
    concept_embeddings().save(str(tmp_path / "concepts"))
    names, got = resolve_concepts(runner, ["red car"], concepts_dir=str(tmp_path / "concepts"))
    np.testing.assert_allclose(got, concept_embeddings().vectors_for(["red car"]))
    small = concept_embeddings()
    small.vectors = small.vectors[:, :4]
    small.save(str(tmp_path / "small"))
    with pytest.raises(DataError, match="small: word vectors have D = 4"):
        resolve_concepts(runner, ["dog"], concepts_dir=str(tmp_path / "small"))
    with pytest.raises(UnknownConceptError, match="blorp"):
        resolve_concepts(runner, ["blorp"], concepts_dir=str(tmp_path / "concepts"))


@pytest.mark.slow
def test_bad_input_is_named_and_nothing_is_written(runner, tiny_saved_model, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(_pixels(20, 20)).save(good)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((2, MAX_SIDE + 1), np.uint8)).save(tmp_path / "wide.png")
    out = str(tmp_path / "out")
    cases = [
        ({"image_paths": [str(good), str(tmp_path / "missing.png")], "concepts": ["dog"]},
         DataError, "missing.png: missing image file"),
        ({"image_paths": [str(good), str(tmp_path / "corrupt.jpg")], "concepts": ["dog"]},
         DataError, "corrupt.jpg: unreadable image file"),
        ({"image_paths": [str(tmp_path / "empty.png")], "concepts": ["dog"]},
         DataError, "empty.png: unreadable image file"),
        ({"image_paths": [str(tmp_path / "wide.png")], "concepts": ["dog"]},
         DataError, rf"wide.png: image is too large \(65x2 pixels\).*<= {MAX_SIDE}"),
        ({"image_paths": [str(good)], "concepts": ["dog", "blorp"]},
         UnknownConceptError, "unknown concept 'blorp'"),
        ({"image_paths": [str(good)], "concepts": []}, ValueError, r"K = 0"),
        ({"image_paths": [], "concepts": ["dog"]}, ValueError, "no image given"),
        ({"image_paths": [str(good)], "concepts": ["dog"], "threshold": 1.5}, ValueError,
         r"threshold must be in \(0, 1\]"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):  # the library behind the CLI, model loaded
            _segment_with(runner, out, **kwargs)
    with pytest.raises(DataError, match="missing.png: missing image file"):  # loading it
        segment(tiny_saved_model, [str(tmp_path / "missing.png")], out, concepts=["dog"])
    assert not os.path.exists(out)


def _segment_with(runner, out_dir: str, image_paths, concepts, threshold=None) -> None:
    """`segment` with a loaded runner."""
    names, vectors = resolve_concepts(runner, concepts)
    segment_images(runner, image_paths, names, vectors, out_dir, threshold, progress=False)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conceptmask_tf.bin.segment", *args,
                           "--noprogress"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.mark.slow
def test_cli_end_to_end(tiny_export_dir, tmp_path):
    files = _write_modes(tmp_path)
    out = tmp_path / "out"
    done = _cli(f"--model={tiny_export_dir / 'conceptmask'}", "--concept=dog",
                "--concept=red car", f"--image={files['exif_rotated'][0]}",
                f"--image={files['grey'][0]}", f"--out_dir={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 image(s) x 2 concept(s)" in done.stdout and str(out) in done.stdout
    with open(out / SUMMARY_FILE) as f:
        result = json.load(f)
    assert [(e["folder"], e["height"], e["width"]) for e in result["images"]] == [
        ("rotated", 40, 24), ("grey", 24, 40)]
    assert [c["concept"] for c in result["images"][0]["concepts"]] == ["dog", "red car"]
    assert all(0.0 <= c["presence"] <= 1.0 for e in result["images"] for c in e["concepts"])

    done = _cli(f"--model={tiny_export_dir / 'conceptmask'}", "--concept=blorp",
                f"--image={files['grey'][0]}", f"--out_dir={tmp_path / 'bad'}")
    assert done.returncode != 0
    assert "conceptmask-segment: unknown concept 'blorp'" in done.stderr


@pytest.mark.slow
def test_cli_with_onnx_needs_and_uses_a_concepts_dir(sharp_onnx, sharp_work_dir, tmp_path):
    image = tmp_path / "x.png"
    Image.fromarray(_pixels(20, 30)).save(image)
    done = _cli(f"--model={sharp_onnx}", "--concept=dog", f"--image={image}",
                f"--out_dir={tmp_path / 'out'}")
    assert done.returncode != 0 and "stores no vocabulary" in done.stderr
    done = _cli(f"--model={sharp_onnx}", "--concept=dog", f"--image={image}",
                f"--concepts_dir={sharp_work_dir / 'concepts'}", f"--out_dir={tmp_path / 'out'}")
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "out" / SUMMARY_FILE) as f:
        assert json.load(f)["runtime"] == "onnx"
    with Image.open(tmp_path / "out" / "x" / "dog_mask.png") as mask:
        assert mask.size == (30, 20)


@pytest.mark.slow
def test_cli_segments_with_the_saved_concept_mask_like_with_its_export(
        tiny_segmenter, tiny_work_dir, tiny_export_dir, tmp_path):
    files = _write_modes(tmp_path)
    results = {}
    for name, model in (("saved", tiny_work_dir / "concept_mask"),
                        ("export", tiny_export_dir / "conceptmask")):
        out = tmp_path / name
        done = _cli(f"--model={model}", "--concept=dog", "--concept=red car",
                    f"--image={files['grey'][0]}", f"--out_dir={out}")
        assert done.returncode == 0, done.stderr[-3000:]
        with open(out / SUMMARY_FILE) as f:
            results[name] = json.load(f)
    saved, exported = ([(c["concept"], c["presence"]) for c in r["images"][0]["concepts"]]
                       for r in (results["saved"], results["export"]))
    assert [c for c, _ in saved] == [c for c, _ in exported] == ["dog", "red car"]
    assert [p for _, p in saved] == pytest.approx([p for _, p in exported], abs=1e-5)
