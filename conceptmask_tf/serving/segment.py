"""Segments concepts in image files with an exported model (the library of conceptmask-segment).

Output layout in `out_dir`:

    segments.json                          the run: model, concepts, and per image the
                                           presence score and file names of each concept
    <image stem>/<concept slug>_mask.png   mask at the image's upright size, 0 or 255
    <image stem>/<concept slug>_overlay.png  the mask blended onto the image

The slug of a concept is its normalised name with spaces as "_" ("Red car" -> "red_car");
concepts given as word vectors are named "vector_<row>". Two images with the same stem
(or two concepts with the same slug) get "_2", "_3", ... appended in input order.

Input images, word-vector files and `out_dir` may be on any TensorFlow filesystem (local,
gs://, ...): every file is read and written through `conceptmask_tf.base.files`, each
output file atomically (written beside its name, then renamed over it).

Images of any mode are read upright (EXIF orientation applied) as RGB: grey is repeated
to three channels, alpha is dropped (pixels as stored), palettes are expanded, 16-bit
images are scaled to 8 bits.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tqdm
from PIL import Image, ImageOps, UnidentifiedImageError

from conceptmask_tf.base import files
from conceptmask_tf.base.names import normalize_concept
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.data.images import MISSING, UNREADABLE, to_rgb
from conceptmask_tf.errors import DataError
from conceptmask_tf.serving.runtimes import DEFAULT_MAX_IMAGE_SIDE, Runner, load_runner
from conceptmask_tf.visualization import PALETTE, overlay_masks

SUMMARY_FILE = "segments.json"


def read_image(path: str, max_side: int = DEFAULT_MAX_IMAGE_SIDE) -> np.ndarray:
    """Reads an image file upright as RGB.

    Args:
        path: Any image file PIL reads, on any TensorFlow filesystem (`base.files`).
        max_side: Largest accepted height or width (checked before decoding).

    Returns:
        uint8 [H, W, 3].

    Raises:
        DataError: Naming the file: missing, unreadable, empty or too large.
    """
    with _reading(path), Image.open(io.BytesIO(_read_bytes(path))) as image:
        _check_size(image, path, max_side)
        return to_rgb(ImageOps.exif_transpose(image))


def check_image_file(path: str, max_side: int = DEFAULT_MAX_IMAGE_SIDE) -> None:
    """`read_image`'s checks from the file header only (no decoding).

    Raises:
        DataError: Naming the file: missing, unreadable, empty or too large.
    """
    with _reading(path), Image.open(io.BytesIO(_read_bytes(path))) as image:
        _check_size(image, path, max_side)


def _read_bytes(path: str) -> bytes:
    with files.open_file(path, "rb") as f:
        return f.read()


@contextlib.contextmanager
def _reading(path: str) -> Iterator[None]:
    """Turns the errors of reading an image file into DataErrors naming it."""
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError(MISSING, path=path) from e
    except Image.DecompressionBombError as e:
        raise DataError(f"image is too large: {e}", path=path) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{UNREADABLE}: {e}", path=path) from e


def _check_size(image: Image.Image, path: str, max_side: int) -> None:
    width, height = image.size
    if min(width, height) < 1:
        raise DataError(f"image is empty ({width}x{height} pixels)", path=path)
    if max(width, height) > max_side:
        raise DataError(f"image is too large ({width}x{height} pixels): height and width "
                        f"must be <= {max_side} (max_image_side)", path=path)


def load_word_vectors(path: str, dim: int | None) -> np.ndarray:
    """Reads a float [K, D] `.npy` file of word vectors (one concept per row).

    Raises:
        DataError: Naming the file: unreadable, not 2-D float, D not `dim`, K = 0 or
            non-finite values.
    """
    try:
        vectors = files.load_npy(path, allow_pickle=False)
    except FileNotFoundError as e:
        raise DataError("missing word-vector file", path=path) from e
    except (OSError, ValueError) as e:
        raise DataError(f"not a readable .npy array: {e}", path=path) from e
    if not isinstance(vectors, np.ndarray):  # an .npz archive
        raise DataError("not a readable .npy array: an .npz archive", path=path)
    want = f"float32 [K, {dim if dim is not None else 'D'}]"
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        raise DataError(f"word vectors must be {want}, got {vectors.dtype} "
                        f"{list(vectors.shape)}", path=path)
    if dim is not None and vectors.shape[1] != dim:
        raise DataError(f"word vectors have D = {vectors.shape[1]} columns, the model takes "
                        f"D = {dim}", path=path)
    if len(vectors) == 0:
        raise DataError("no word vectors (K = 0 rows)", path=path)
    bad = np.flatnonzero(~np.all(np.isfinite(vectors), axis=1))
    if len(bad):
        raise DataError(f"word vectors contain NaN or Inf (rows {bad.tolist()[:10]})",
                        path=path)
    return vectors.astype(np.float32)


def resolve_concepts(runner: Runner, concepts: Sequence[str] | None = None,
                     word_vectors: str | None = None, concepts_dir: str | None = None
                     ) -> tuple[list[str], np.ndarray]:
    """The names and word vectors of the concepts to segment.

    Concept names take their vectors from `concepts_dir` when given, else from the
    vocabulary stored in a SavedModel.

    Args:
        runner: The model (its D is checked).
        concepts: Concept names or phrases.
        word_vectors: Or a `.npy` file of float [K, D] vectors.
        concepts_dir: Folder with concepts.tsv and word_vectors.npy.

    Returns:
        (names, float32 [K, D]); names of file vectors are "vector_<row>".

    Raises:
        ValueError: Both concepts and word_vectors, no concept (K = 0), or
            concept names for a model without a vocabulary and no concepts_dir.
        DataError: A bad word-vector file or concepts dir of another D.
        UnknownConceptError: A concept (or a word of a phrase) outside the vocabulary.
    """
    if concepts and word_vectors is not None:
        raise ValueError("give concept names or a word-vector file, not both")
    if word_vectors is not None:
        vectors = load_word_vectors(word_vectors, runner.dim)
        width = len(str(len(vectors) - 1))
        return [f"vector_{i:0{width}d}" for i in range(len(vectors))], vectors
    if not concepts:
        raise ValueError("no concept given (K = 0): give at least one concept name or a "
                         "word-vector file")
    names = list(concepts)
    if concepts_dir is not None:
        embeddings = ConceptEmbeddings.load(concepts_dir)
        if runner.dim is not None and embeddings.dim != runner.dim:
            raise DataError(f"word vectors have D = {embeddings.dim}, the model {runner.path} "
                            f"takes D = {runner.dim}: not the model's concepts dir",
                            path=concepts_dir)
        return names, embeddings.vectors_for(names)
    return names, runner.concept_vectors(names)


def concept_slug(name: str) -> str:
    """File-name part for a concept: "Red car" -> "red_car"."""
    slug = re.sub(r"[^0-9a-z_-]", "", normalize_concept(name).replace(" ", "_"))
    return slug or "concept"


def unique(names: Sequence[str], reserved: Sequence[str] = ()) -> list[str]:
    """`names` with repeats (and `reserved` names) suffixed "_2", "_3", ... in order."""
    taken = set(reserved)
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}_{n}"
        taken.add(candidate)
        out.append(candidate)
    return out


def segment_images(runner: Runner, image_paths: Sequence[str], names: Sequence[str],
                   vectors: np.ndarray, out_dir: str, threshold: float | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Segments every concept in every image and writes masks, overlays and segments.json.

    All image files are checked (readable, not empty, not too large) before anything is
    written.

    Args:
        runner: The model.
        image_paths: Image files.
        names: K concept names (for file names and the JSON).
        vectors: float32 [K, D].
        out_dir: Output folder (created).
        threshold: Masks are mask_probs >= threshold; None takes the model's `masks`
            output (its own threshold, 0.5).
        progress: Show a progress bar on stderr.

    Returns:
        What segments.json holds: {"model", "runtime", "threshold", "concepts",
        "images": [{"image", "width", "height", "folder", "concepts": [{"concept",
        "presence", "mask_fraction", "mask", "overlay"}]}]}; paths relative to out_dir.

    Raises:
        ValueError: No image, a threshold outside (0, 1], or not one name per vector.
        DataError: A bad image file (named).
    """
    if not image_paths:
        raise ValueError("no image given: give at least one image file")
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if len(names) != len(vectors):
        raise ValueError(f"{len(names)} concept names for {len(vectors)} word vectors")
    for path in image_paths:  # fail before writing anything
        check_image_file(path, runner.max_image_side)
    folders = unique([_stem(p) for p in image_paths], reserved=[SUMMARY_FILE])
    slugs = unique([concept_slug(n) for n in names])
    result: dict[str, Any] = {"model": runner.path, "runtime": runner.kind,
                              "threshold": threshold, "concepts": list(names), "images": []}
    for path, folder in tqdm.tqdm(list(zip(image_paths, folders)), desc="segmenting",
                                  unit="image", disable=not progress or len(image_paths) < 2):
        image = read_image(path, runner.max_image_side)  # [H, W, 3]
        outputs = runner(image, vectors)
        masks = (outputs["masks"] > 0 if threshold is None
                 else outputs["mask_probs"] >= threshold)  # bool [K, H, W]
        files.makedirs(os.path.join(out_dir, folder))
        entries = []
        for k, (name, slug) in enumerate(zip(names, slugs)):
            mask_file = os.path.join(folder, f"{slug}_mask.png")
            overlay_file = os.path.join(folder, f"{slug}_overlay.png")
            _write_png(Image.fromarray(masks[k].astype(np.uint8) * 255),
                       os.path.join(out_dir, mask_file))
            overlay = overlay_masks(image, [masks[k]], colors=[PALETTE[k % len(PALETTE)]])
            _write_png(Image.fromarray(overlay), os.path.join(out_dir, overlay_file))
            entries.append({"concept": name, "presence": float(outputs["presence"][k]),
                            "mask_fraction": float(masks[k].mean()), "mask": mask_file,
                            "overlay": overlay_file})
        result["images"].append({"image": path, "width": image.shape[1],
                                 "height": image.shape[0], "folder": folder,
                                 "concepts": entries})
    files.write_atomically(os.path.join(out_dir, SUMMARY_FILE),
                           json.dumps(result, indent=1) + "\n")
    return result


def segment(model: str, image_paths: Sequence[str], out_dir: str,
            concepts: Sequence[str] | None = None, word_vectors: str | None = None,
            concepts_dir: str | None = None, threshold: float | None = None,
            max_image_side: int = DEFAULT_MAX_IMAGE_SIDE, progress: bool = True
            ) -> dict[str, Any]:
    """Loads a model and runs `segment_images` (see there and `resolve_concepts`).

    Args:
        model: SavedModel dir, `.tflite` or `.onnx` (`runtimes.load_runner`).
        image_paths: Image files.
        out_dir: Output folder.
        concepts: Concept names, or
        word_vectors: a `.npy` file of float [K, D] vectors.
        concepts_dir: Word vectors for concept names (needed by .tflite and .onnx).
        threshold: Mask threshold (None: the model's masks).
        max_image_side: Largest accepted image height or width.
        progress: Show a progress bar on stderr.

    Returns:
        The segments.json content.
    """
    if not image_paths:
        raise ValueError("no image given: give at least one image file")
    runner = load_runner(model, max_image_side=max_image_side)
    names, vectors = resolve_concepts(runner, concepts, word_vectors, concepts_dir)
    return segment_images(runner, image_paths, names, vectors, out_dir, threshold, progress)


def summary(result: dict[str, Any], out_dir: str) -> str:
    """A few lines on what a run wrote: per image, each concept's presence and mask area."""
    lines = [(f"{len(result['images'])} image(s) x {len(result['concepts'])} concept(s) with "
             f"{result['runtime']} model {result['model']}")]
    for entry in result["images"]:
        scores = ", ".join(f"{c['concept']} {c['presence']:.2f} ({c['mask_fraction']:.0%})"
                           for c in entry["concepts"])
        lines.append(f"  {entry['image']}: presence (mask area) {scores}")
    lines.append(f"masks and overlays in {out_dir}/<image>/, scores in "
                 f"{os.path.join(out_dir, SUMMARY_FILE)}")
    return "\n".join(lines)


def _stem(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    return re.sub(r"[^\w.-]", "_", stem) or "image"


def _write_png(image: Image.Image, path: str) -> None:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    files.write_atomically(path, buffer.getvalue())
