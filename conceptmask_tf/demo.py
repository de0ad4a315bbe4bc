"""The main job on the embedded default: concept world -> concept vectors -> what they show.

`conceptmask-demo` calls `run_demo`. Each step is skipped when its output already exists (a
rerun resumes), so an interrupted demo costs only the unfinished step.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np

from conceptmask_tf import visualization
from conceptmask_tf.concepts import build
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.data import coco, splits
from conceptmask_tf.data.images import load_image
from conceptmask_tf.data.layout import SPLITS, DataRoot
from conceptmask_tf.data.world import WorldConfig, generate_world

WORLD_DIR = "data"
CONCEPTS_DIR = "concepts"
REPORT_DIR = "report"
PREVIEW_FILE = "world_preview.png"
NEIGHBOURS_FILE = "neighbours.json"


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """Paths the demo wrote and the text it printed."""

    work_dir: str
    data_root: str
    concepts_dir: str
    preview: str
    neighbours: str
    text: str


def nearest_concepts(embeddings: ConceptEmbeddings, concept: str, k: int = 5) -> list[tuple[str, float]]:
    """The `k` vocabulary concepts whose word vectors have the highest cosine with `concept`'s.

    Works for phrases outside the vocabulary too (their phrase vector is used); the concept
    itself is left out.
    """
    query = embeddings.vector(concept)
    norms = np.linalg.norm(embeddings.vectors, axis=1) * max(np.linalg.norm(query), 1e-12)
    cosine = embeddings.vectors @ query / np.maximum(norms, 1e-12)  # [V]
    order = np.argsort(-cosine, kind="stable")
    names = embeddings.vocabulary.concepts
    return [(names[i], float(cosine[i])) for i in order if names[i] != concept][:k]


def run_demo(work_dir: str, world: WorldConfig, dim: int, overwrite: bool = False,
             progress: bool = True) -> DemoResult:
    """Generates the concept world and its concept vectors under `work_dir`, then reports.

    Args:
        work_dir: Output folder: `data/` (the data root), `concepts/`, `report/`.
        world: Concept-world configuration.
        dim: Word-vector dimension.
        overwrite: Regenerate every step even if its output exists.
        progress: Progress bars on stderr.

    Returns:
        What was written, with a human-readable summary.
    """
    data_root = os.path.join(work_dir, WORLD_DIR)
    concepts_dir = os.path.join(work_dir, CONCEPTS_DIR)
    report_dir = os.path.join(work_dir, REPORT_DIR)
    lines = []

    if overwrite or not _world_matches(data_root, world):
        if os.path.exists(data_root):
            shutil.rmtree(data_root)
        summary = generate_world(world, data_root, progress=progress)
        lines.append(summary.report())
    else:
        lines.append(f"concept world: reusing {data_root} (same configuration)")

    if overwrite or not _concepts_match(concepts_dir, data_root, dim):
        root = DataRoot(data_root)
        result = build.build_concepts(root.tags, concepts_dir, dim, data_root=data_root,
                                      overlap_source="both", progress=progress)
        _write_stamp(concepts_dir, data_root, dim)
        lines.append(result.text())
    else:
        lines.append(f"concept vectors: reusing {concepts_dir}")

    os.makedirs(report_dir, exist_ok=True)
    embeddings = ConceptEmbeddings.load(concepts_dir)
    level = splits.read_splits(DataRoot(data_root).splits)
    neighbours = {}
    for split in SPLITS:
        for concept in level[split][:2]:
            neighbours[concept] = {"split": split,
                                   "nearest": nearest_concepts(embeddings, concept)}
    neighbours_path = os.path.join(report_dir, NEIGHBOURS_FILE)
    with open(neighbours_path, "w") as f:
        json.dump(neighbours, f, indent=1)
    lines.append("nearest concepts in word-vector space (cosine):")
    for concept, entry in neighbours.items():
        near = ", ".join(f"{n} {c:.2f}" for n, c in entry["nearest"])
        lines.append(f"  {concept!r} ({entry['split']}): {near}")

    preview_path = os.path.join(report_dir, PREVIEW_FILE)
    write_world_preview(DataRoot(data_root), preview_path)
    lines += ["", "wrote:",
              f"  data root          {data_root}",
              f"  concept vectors    {concepts_dir} (concepts.tsv, word_vectors.npy, overlap.npz)",
              f"  world preview      {preview_path}",
              f"  nearest concepts   {neighbours_path}"]
    return DemoResult(work_dir, data_root, concepts_dir, preview_path, neighbours_path,
                      "\n".join(lines))


def write_world_preview(root: DataRoot, path: str, per_split: int = 4) -> None:
    """A contact sheet: for each split, held-out images with one ground-truth concept overlaid."""
    rows, captions = [], []
    for split in SPLITS:
        truth = [t for t in splits.read_split_ground_truth(root, split) if t.masks]
        row, caption, seen = [], [], set()
        for image in truth:
            mask = next((m for m in image.masks if m.concept not in seen), None)
            if mask is None:
                continue
            seen.add(mask.concept)
            pixels = load_image(root.path(image.image))
            row.append(visualization.overlay_masks(pixels, [coco.decode_mask(mask.rle)]))
            caption.append(f"{split}: {mask.concept}")
            if len(row) == per_split:
                break
        rows.append(row)
        captions.append(caption)
    visualization.contact_sheet(rows, captions, tile_size=160).save(path)


def _world_matches(data_root: str, world: WorldConfig) -> bool:
    description = os.path.join(data_root, "world.json")
    if not os.path.exists(description):
        return False
    with open(description) as f:
        return json.load(f).get("config") == dataclasses.asdict(world)


_STAMP = "demo_stamp.json"


def _stamp(data_root: str, dim: int) -> dict:
    """What the concept vectors were built from: a rerun reuses them only if it matches."""
    return {"data_root": os.path.abspath(data_root), "dim": dim,
            "world_mtime": os.path.getmtime(os.path.join(data_root, "world.json"))}


def _write_stamp(concepts_dir: str, data_root: str, dim: int) -> None:
    with open(os.path.join(concepts_dir, _STAMP), "w") as f:
        json.dump(_stamp(data_root, dim), f)


def _concepts_match(concepts_dir: str, data_root: str, dim: int) -> bool:
    stamp = os.path.join(concepts_dir, _STAMP)
    if not os.path.exists(stamp):
        return False
    with open(stamp) as f:
        return json.load(f) == _stamp(data_root, dim)
