"""Which network's pooled embedding tells present from absent concepts (departure 13 in docs/method.md).

The presence score is a calibrated sigmoid of the cosine between a concept's word vector
and an image embedding. This script measures, on the VALIDATION split by default, how well
that cosine separates present (image, concept) pairs from verified-absent ones when the
embedding comes from the stage-1 network (what `ConceptMask(presence_embedding=...)` uses)
or from the stage-2 network's fine-tuned copy of it (`presence_embedding=None`): the ROC
AUC of each over the pairs of the strong, weak_box and weak_image splits.

    python benchmarks/presence_source.py --work_dir W --data_root W/data
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import tensorflow as tf
from scipy import stats

from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.evaluation.eval_set import load_eval_set
from conceptmask_tf.models import stage_files

SPLITS = ("strong", "weak_box", "weak_image")


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half (Mann-Whitney U / n m)."""
    u = stats.mannwhitneyu(positives, negatives, alternative="two-sided").statistic
    return float(u / (len(positives) * len(negatives)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", required=True, help="holds concepts/ and models/")
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--image_size", type=int, default=128)
    args = parser.parse_args()

    embeddings = ConceptEmbeddings.load(os.path.join(args.work_dir, "concepts"))
    eval_set = load_eval_set(args.data_root, embeddings, splits=SPLITS,
                             which="val" if args.split == "val" else "eval")
    models = os.path.join(args.work_dir, "models")
    stage1 = stage_files.load_stage_model(os.path.join(models, "embedding"), "embedding")
    stage2 = stage_files.load_stage_model(os.path.join(models, "refinement"), "refinement")
    networks = {"stage1": lambda x: stage1(x, training=False),
                "stage2_finetuned": lambda x: stage2.embedding(x, training=False)["embedding"]}
    scores = {name: ([], []) for name in networks}
    for image in eval_set.images:
        pixels = tf.image.resize(eval_set.pixels(image)[None].astype(np.float32),
                                 (args.image_size, args.image_size), antialias=False)
        concepts, vectors = eval_set.vectors_for(image.pairs)
        present = {p.concept: p.present for p in image.pairs}
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        for name, network in networks.items():
            embedding = np.asarray(network(pixels))[0]
            cosine = unit @ (embedding / np.linalg.norm(embedding))
            for concept, value in zip(concepts, cosine):
                scores[name][0 if present[concept] else 1].append(float(value))
    result = {name: {"roc_auc": roc_auc(np.array(pos), np.array(neg)),
                     "positives": len(pos), "negatives": len(neg)}
              for name, (pos, neg) in scores.items()}
    print(json.dumps({"split": args.split, **result}))


if __name__ == "__main__":
    main()
