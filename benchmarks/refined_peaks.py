"""Where do the refined maps of unsupervised concepts peak, and why?

Two diagnostics of a trained stage 2 (issue 13, BENCHMARKS.md "Stage 2 and the weak
concepts"), by default on the VALIDATION split:

1. Per concept (--concepts): the pointing game against the concept's mask at the map's own
   resolution (16 x 16 for the world preset) of the stage-1 map (Original), the fine-tuned
   coarse map and the refined map, and where the refined maximum falls when it misses:
   in the region of another present concept of the image (which one), or in none.
2. The refinement head's word-space output r_ij (`ConceptRefinement`: logit_ij(w) =
   <r_ij, w/|w|> + s alpha0_ij(w) + b) averaged over the region of --region_concept (e.g.
   the sky), projected on every vocabulary concept's unit vector and printed from the
   lowest to the highest with the concept's supervision split: whether the head, while
   making the supervised concepts negative there, makes the unsupervised ones positive.

    python benchmarks/refined_peaks.py --work_dir W --data_root W/data \
        --concepts red,white,dotted,tail --region_concept sky
"""

from __future__ import annotations

import argparse
import collections
import os

import keras
import numpy as np
import tensorflow as tf

from conceptmask_tf.concepts.concept_sets import load_training_concepts
from conceptmask_tf.evaluation.eval_set import load_eval_set
from conceptmask_tf.models import ConceptAttention, stage_files, to_fully_convolutional


def _cells(mask: np.ndarray, side: int) -> np.ndarray:
    """bool [side, side]: cells the mask covers for at least half their area."""
    area = tf.image.resize(mask.astype(np.float32)[..., None], (side, side), method="area")
    return area.numpy()[..., 0] >= 0.5


def _maps(models: dict, pixels: np.ndarray, vectors: np.ndarray, image_size: int) -> dict:
    """[h, w, K] original, fine-tuned coarse and refined maps, and r [h, w, D]."""
    image = tf.image.resize(pixels[None].astype(np.float32), (image_size, image_size))
    vectors = tf.constant(vectors[None])
    refinement = models["refinement"]
    original = models["cosine"](models["stage1"](image, training=False)["embedding_map"],
                                vectors)
    embedding_map = refinement.embedding(image, training=False)["embedding_map"]
    logits, coarse = refinement.refine(embedding_map, vectors)
    head = refinement.head
    words = head.project(head.combine(refinement.vocabulary(embedding_map)))
    return {name: keras.ops.convert_to_numpy(value)[0] for name, value in
            (("original", original), ("finetuned", coarse), ("refined", logits),
             ("words", words))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", required=True, help="With concepts/ and models/.")
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--split", default="val", choices=("val", "eval"))
    parser.add_argument("--concepts", default="red,white,dotted,tail",
                        help="Comma-separated concepts for the per-concept rows.")
    parser.add_argument("--region_concept", default="sky")
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--max_images", type=int, default=None)
    args = parser.parse_args()

    concepts_dir = os.path.join(args.work_dir, "concepts")
    models_dir = os.path.join(args.work_dir, "models")
    training = load_training_concepts(args.data_root, concepts_dir)
    embeddings = training.embeddings
    eval_set = load_eval_set(args.data_root, embeddings, max_images=args.max_images,
                             which=args.split)
    models = {"refinement": stage_files.load_stage_model(
                  os.path.join(models_dir, "refinement"), "refinement"),
              "stage1": to_fully_convolutional(stage_files.load_stage_model(
                  os.path.join(models_dir, "embedding"), "embedding")),
              "cosine": ConceptAttention("cosine")}
    split_of = {c: s for s, names in training.splits.items() for c in names}
    wanted = [c.strip() for c in args.concepts.split(",") if c.strip()]
    hits = {c: collections.Counter() for c in wanted}
    misses = {c: collections.Counter() for c in wanted}
    counts = collections.Counter()
    units = embeddings.vectors / np.maximum(
        np.linalg.norm(embeddings.vectors, axis=1, keepdims=True), 1e-12)
    projection, regions, side = np.zeros(len(units)), 0, None
    for image in eval_set.images:
        present = {p.concept: p for p in image.pairs if p.present}
        queried = [c for c in wanted if c in present]
        if args.region_concept in present:
            queried.append(args.region_concept)
        if not queried:
            continue
        queried = list(dict.fromkeys(queried))
        pixels = eval_set.pixels(image)
        maps = _maps(models, pixels, np.stack([eval_set.vectors[c] for c in queried]),
                     args.image_size)
        side = maps["refined"].shape[0]
        cells = {c: _cells(p.truth()[0], side) for c, p in present.items()}
        for k, concept in enumerate(queried):
            if concept not in wanted:
                continue
            counts[concept] += 1
            for name in ("original", "finetuned", "refined"):
                peak = np.unravel_index(np.argmax(maps[name][..., k]), (side, side))
                hits[concept][name] += bool(cells[concept][peak])
                if name == "refined" and not cells[concept][peak]:
                    others = [c for c, m in cells.items() if c != concept and m[peak]]
                    misses[concept][others[0] if others else "(no concept)"] += 1
        if args.region_concept in present and cells[args.region_concept].any():
            region = maps["words"][cells[args.region_concept]]  # [n, D]
            projection += region.mean(axis=0) @ units.T
            regions += 1

    if side is None:
        raise SystemExit(f"no {args.split} image has any of {wanted} or "
                         f"{args.region_concept!r} present")
    print(f"pointing game at {side} x {side} against the mask ({args.split} split)")
    print("concept | split | pairs | original | fine-tuned | refined | refined misses fall on")
    for concept in wanted:
        n = counts[concept]
        if not n:
            print(f"{concept} | {split_of.get(concept, '-')} | 0 | | | |")
            continue
        rates = " | ".join(f"{hits[concept][k] / n:.2f}"
                           for k in ("original", "finetuned", "refined"))
        where = ", ".join(f"{c} {m}" for c, m in misses[concept].most_common(4))
        print(f"{concept} | {split_of.get(concept, '-')} | {n} | {rates} | {where}")
    if regions:
        projection /= regions
        names = embeddings.vocabulary.concepts
        order = np.argsort(projection)
        row = lambda i: f"{names[i]} ({split_of.get(names[i], 'vocabulary only')}) {projection[i]:+.1f}"
        print(f"\nmean <r_ij, w/|w|> over the {args.region_concept} region "
              f"({regions} images)")
        print("lowest: " + "; ".join(row(i) for i in order[:10]))
        print("highest: " + "; ".join(row(i) for i in order[::-1][:12]))


if __name__ == "__main__":
    main()
