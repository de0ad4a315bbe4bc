"""Follow weak and unseen concepts through the stages: where does a concept lose its region?

For every concept of the chosen splits (default weak_image and zero_shot) on the
VALIDATION split by default, one row per concept:

  nearest supervised concept (the weak-concept rule of §4.4) and the cosine of the two
  word vectors; pointing game against boxes of the stage-1 map ("original"), of stage 2's
  fine-tuned stage-1 map ("original_finetuned"), of the refined map of the concept's own
  vector ("refined") and of the map stage 3 is given, blended with the neighbour's at the
  calibrated theta ("blended"); mask IoU with that blend (the model as exported), with
  theta = 1 (the concept's own refined map), and with oracle attention (the ceiling of
  the segmentation network); and the IoU of the own refined map without stage 3
  ("own_attention": the map upsampled to the image, min-max normalised per map and
  thresholded at 0.5), so a drop from own_attention to own_map is stage 3's.

The step where the figures drop is where the concept's region is lost. A models folder and
concepts of `conceptmask-pipeline` (or the demo) and the theta its evaluation chose:

    python benchmarks/weak_path.py --work_dir conceptmask_demo --data_root conceptmask_demo/data \
        --theta "$(python -c 'import json; print(json.load(open("conceptmask_demo/report/report.json"))["calibration"]["theta"])')"
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

import numpy as np
import tensorflow as tf

from conceptmask_tf.assembly.stage_networks import load_stage_networks, supervised_concepts
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.evaluation.attention_evaluation import evaluate_attention
from conceptmask_tf.evaluation.eval_set import load_eval_set
from conceptmask_tf.evaluation.evaluator import ORACLE_BLUR_SIGMA
from conceptmask_tf.evaluation.predictors import (
    AttentionMaps,
    OracleAttention,
    compiled,
)
from conceptmask_tf.evaluation.segmentation_evaluation import evaluate_segmentation
from conceptmask_tf.models import NormalizeAttention
from conceptmask_tf.models.tensor_ops import resize_concept_maps


class WithBlend:
    """`AttentionMaps` plus "blended": the ConceptMask's first-scale attention (the map
    stage 3 is given), upsampled to the image."""

    def __init__(self, maps: AttentionMaps, model: Any) -> None:
        self.maps, self.model = maps, model

    def __call__(self, inputs, training=False):
        out = dict(self.maps(inputs))
        attention = self.model(inputs, training=False)["attention"]  # [B, K, h, w]
        out["blended"] = resize_concept_maps(attention, tf.shape(inputs["image"])[1:3])
        return out


class OwnAttentionMask:
    """mask_probs = the refined own map (`AttentionMaps`' "refined"), min-max normalised
    per map: the mask without stage 3, for `evaluate_segmentation` (threshold 0.5)."""

    def __init__(self, maps: AttentionMaps) -> None:
        self.maps = maps
        self.normalize = NormalizeAttention()  # what stage 3 does to its input maps

    def __call__(self, inputs, training=False):
        return {"mask_probs": self.normalize(self.maps(inputs)["refined"])}  # [B, K, H, W]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", required=True, help="holds concepts/ and models/")
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--splits", default="weak_image,zero_shot")
    parser.add_argument("--theta", type=float, required=True, help="the calibrated theta")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()

    embeddings = ConceptEmbeddings.load(os.path.join(args.work_dir, "concepts"))
    splits = tuple(args.splits.split(","))
    eval_set = load_eval_set(args.data_root, embeddings, splits=splits,
                             which="val" if args.split == "val" else "eval")
    eval_set = dataclasses.replace(eval_set, images=[  # present pairs only
        dataclasses.replace(i, pairs=tuple(p for p in i.pairs if p.present))
        for i in eval_set.images if any(p.present for p in i.pairs)])
    variants = load_stage_networks(os.path.join(args.work_dir, "models"))
    supervised, _ = supervised_concepts(variants, args.data_root, embeddings)
    supervised_vectors = embeddings.vectors_for(supervised)
    model = variants.concept_mask("refinement", "segmentation", supervised_vectors)
    dim = embeddings.dim
    maps = AttentionMaps(variants.fully_convolutional_embedding(),
                         variants.networks["refinement"], None, variants.image_size)

    model.set_weak_theta(args.theta)
    attention = evaluate_attention(compiled(WithBlend(maps, model), dim), eval_set,
                                   (*maps.variants, "blended"), progress=False)
    iou = {"blended": evaluate_segmentation(compiled(model, dim), eval_set, progress=False)}
    model.set_weak_theta(1.0)
    iou["own_map"] = evaluate_segmentation(compiled(model, dim), eval_set, progress=False)
    iou["own_attention"] = evaluate_segmentation(compiled(OwnAttentionMask(maps), dim),
                                                 eval_set, progress=False)
    oracle = OracleAttention(variants.networks["segmentation"], variants.image_size,
                             variants.attention_sides(variants.scales), ORACLE_BLUR_SIGMA)
    iou["oracle"] = evaluate_segmentation(compiled(oracle, dim, with_truth=True), eval_set,
                                          progress=False, with_truth=True)

    unit = supervised_vectors / np.linalg.norm(supervised_vectors, axis=1, keepdims=True)
    rows = []
    for split in splits:
        for concept in sorted(iou["blended"].per_concept.get(split, {})):
            vector = embeddings.vector(concept)
            cosines = unit @ (vector / np.linalg.norm(vector))
            nearest = int(np.argmax(cosines))
            row = {"split": split, "concept": concept, "nearest": supervised[nearest],
                   "cosine": round(float(cosines[nearest]), 3),
                   "images": iou["blended"].per_concept[split][concept]["images"]}
            for variant in (*maps.variants, "blended"):
                row[f"pg_{variant}"] = round(
                    attention[split][variant]["per_concept"][concept]["pointing_game"], 3)
            for name, result in iou.items():
                row[f"iou_{name}"] = round(result.per_concept[split][concept]["iou"], 3)
            rows.append(row)
    columns = ["split", "concept", "nearest", "cosine", "images", "pg_original",
               "pg_original_finetuned", "pg_refined", "pg_blended", "iou_own_attention",
               "iou_own_map", "iou_blended", "iou_oracle"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    means = {c: round(float(np.mean([r[c] for r in rows])), 3) for c in columns[5:]}
    print("| mean | | | | | " + " | ".join(str(means[c]) for c in columns[5:]) + " |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"split": args.split, "theta": args.theta, "rows": rows,
                       "means": means}, f, indent=1)


if __name__ == "__main__":
    main()
