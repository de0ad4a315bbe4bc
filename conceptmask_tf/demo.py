"""The main job on the embedded default: concept world -> `conceptmask-pipeline` on it.

`conceptmask-demo` calls `run_demo`: it generates the concept world (unless the same one is
there already), runs the whole pipeline on it (concept vectors, the three stages, their
ablations and the saliency baseline, evaluation of the test split with the paper's tables),
and adds a preview of the world and the nearest concepts in word space. Finished steps are
skipped, so a rerun resumes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable

import numpy as np

from conceptmask_tf import visualization
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.data import coco, splits
from conceptmask_tf.data.images import load_image
from conceptmask_tf.data.layout import SPLITS, DataRoot
from conceptmask_tf.data.world import WorldConfig, generate_world
from conceptmask_tf.pipeline import PipelineConfig, PipelineResult, announce_line, run_pipeline

WORLD_DIR = "data"
PREVIEW_FILE = "world_preview.png"
NEIGHBOURS_FILE = "neighbours.json"


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """Paths the demo wrote and the text it printed."""

    work_dir: str
    data_root: str
    pipeline: PipelineResult
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


def run_demo(work_dir: str, world: WorldConfig, dim: int = 32, overwrite: bool = False,
             progress: bool = True, pipeline_options: dict | None = None,
             announce: Callable[[str], None] = announce_line) -> DemoResult:
    """Generates the concept world under `work_dir/data` and runs the pipeline on it.

    Args:
        work_dir: Output folder: `data/` (the data root) and the pipeline's work dir
            layout (`concepts/`, `models/`, `report/`).
        world: Concept-world configuration.
        dim: Word-vector dimension.
        overwrite: Regenerate every step even if its output exists.
        progress: Progress bars on stderr.
        pipeline_options: Other `PipelineConfig` fields (e.g. max_eval_images, stage_overrides).
        announce: Called with a line before each step.

    Returns:
        What was written, with a human-readable summary.
    """
    data_root = os.path.join(work_dir, WORLD_DIR)
    lines = []
    if overwrite or not _world_matches(data_root, world):
        announce("concept world ...")
        if os.path.exists(data_root):
            shutil.rmtree(data_root)
        summary = generate_world(world, data_root, progress=progress)
        lines.append(summary.report())
    else:
        lines.append(f"concept world: reusing {data_root} (same configuration)")

    config = PipelineConfig(data_root=data_root, work_dir=work_dir, preset="world", dim=dim,
                            overwrite=overwrite, progress=progress,
                            **(pipeline_options or {}))
    result = run_pipeline(config, announce=announce)

    os.makedirs(config.report_dir, exist_ok=True)
    embeddings = ConceptEmbeddings.load(config.concepts_dir)
    level = splits.read_splits(DataRoot(data_root).splits)
    neighbours = {}
    for split in SPLITS:
        for concept in level[split][:2]:
            neighbours[concept] = {"split": split,
                                   "nearest": nearest_concepts(embeddings, concept)}
    neighbours_path = os.path.join(config.report_dir, NEIGHBOURS_FILE)
    with open(neighbours_path, "w") as f:
        json.dump(neighbours, f, indent=1)
    lines.append("nearest concepts in word-vector space (cosine):")
    for concept, entry in neighbours.items():
        near = ", ".join(f"{n} {c:.2f}" for n, c in entry["nearest"])
        lines.append(f"  {concept!r} ({entry['split']}): {near}")
    preview_path = os.path.join(config.report_dir, PREVIEW_FILE)
    write_world_preview(DataRoot(data_root), preview_path)
    if result.report is not None:
        lines += ["", (f"segmentation IoU on the {result.report['split']} split "
                       "(full model | saliency baseline | oracle attention):")]
        segmentation = result.report["segmentation"]
        for split in SPLITS:
            values = [segmentation[v][split]["iou"]
                      for v in ("full", "saliency", "oracle_attention")]
            lines.append(f"  {split:<11} " + " | ".join(_number(v) for v in values))
    lines += ["", result.text(),
              f"  data root          {data_root}",
              f"  world preview      {preview_path}",
              f"  nearest concepts   {neighbours_path}"]
    return DemoResult(work_dir, data_root, result, preview_path, neighbours_path,
                      "\n".join(lines))


def _number(value: float | None) -> str:
    return "  –  " if value is None else f"{value:.3f}"


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
