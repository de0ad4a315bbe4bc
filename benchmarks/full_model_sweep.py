"""Mean IoU of the full model by split against the weak-blend theta and the mask threshold.

The report binarises `mask_probs` at 0.5 (as the serving signature's "masks" do) with the
theta that calibration chose on the weak_image validation concepts. This scores the same
full model for every (theta, t) pair given, `mask_probs >= t`, averaged per concept then
over concepts, on every (image, present concept) pair of the split's files; zero-shot
concepts included, so a theta good for weak_image can be seen to cost the unseen ones:

    python benchmarks/full_model_sweep.py --work_dir W --data_root W/data [--split val] \
        [--thetas 0,0.25,0.5,0.75,1] [--thresholds 0.5]

W holds `models/` (refinement, segmentation) and `concepts/`, as `conceptmask-pipeline`
writes them. BENCHMARKS.md, "A per-location term in the refinement head".
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from conceptmask_tf.assembly.stage_networks import load_stage_networks, supervised_concepts
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.evaluation import evaluator, metrics
from conceptmask_tf.evaluation.eval_set import load_eval_set
from conceptmask_tf.evaluation.predictors import compiled, predict_pairs


def sweep(work_dir: str, data_root: str, thetas: list[float], thresholds: list[float],
          split: str = "val") -> dict[tuple[float, float], dict[str, float]]:
    """(theta, threshold) -> split name -> concept-averaged IoU of the full model."""
    concepts_dir = os.path.join(work_dir, "concepts")
    variants = load_stage_networks(os.path.join(work_dir, "models"))
    embeddings = ConceptEmbeddings.load(concepts_dir)
    eval_set = load_eval_set(data_root, embeddings, which=evaluator.SCORED_SPLITS[split])
    supervised, _ = supervised_concepts(variants, data_root, embeddings)
    full = variants.concept_mask("refinement", "segmentation",
                                 embeddings.vectors_for(supervised))
    results = {}
    for theta in thetas:
        full.set_weak_theta(theta)
        averagers = {t: {s: metrics.ConceptAverager(("iou",)) for s in eval_set.splits}
                     for t in thresholds}
        predictor = compiled(full, embeddings.dim)  # a new trace sees the new theta
        for image, pair, outputs in predict_pairs(predictor, eval_set, tuple(eval_set.splits),
                                                  ("mask_probs",), desc=f"theta {theta}"):
            truth, ignore = pair.truth()
            for t in thresholds:
                _, _, iou = metrics.binary_scores(outputs["mask_probs"], truth, ignore,
                                                  threshold=t)
                averagers[t][pair.split].add(pair.concept, image.image, iou=iou)
        for t in thresholds:
            results[theta, t] = {s: averagers[t][s].result()["iou"] for s in eval_set.splits}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", required=True)
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--split", choices=tuple(evaluator.SCORED_SPLITS), default="val")
    parser.add_argument("--thetas", default="0,0.25,0.5,0.75,1")
    parser.add_argument("--thresholds", default="0.5")
    args = parser.parse_args()
    thetas = [float(t) for t in args.thetas.split(",")]
    thresholds = [float(t) for t in args.thresholds.split(",")]
    results = sweep(args.work_dir, args.data_root, thetas, thresholds, args.split)
    print(f"mean IoU of the full model ({args.split} split)")
    for (theta, t), by_split in results.items():
        cells = " | ".join(f"{s} {v:.3f}" for s, v in by_split.items())
        print(f"theta {theta:.2f} | t {t:.2f} | {cells} | "
              f"mean {np.mean(list(by_split.values())):.3f}")


if __name__ == "__main__":
    main()
