"""Pointing game and soft IoU of stage-2 checkpoints: how the refined maps improve with epochs.

Scores the per-epoch checkpoints a refinement run keeps (`<model_dir>/checkpoints/
refinement-epochNNN.keras`; copy them elsewhere while a long run goes on, since only the
newest are kept) with the evaluation's attention code (`AttentionMaps`,
`evaluate_attention`: maps at the image size, min-max normalised, per concept then over
concepts) on the strong and weak_box test splits of a data root, next to the stage-1
("original") maps. A work dir of `conceptmask-demo` or `conceptmask-pipeline` gives the
concepts and the stage-1 network.

    conceptmask-train-refinement --flagfile=flags/world_stage2.cfg --data_root=W/data \
        --concepts_dir=W/concepts --embedding_model_dir=W/models/embedding \
        --model_dir=/tmp/refinement30 --epochs=30 --summary_images=0
    python benchmarks/attention_checkpoints.py --work_dir W --data_root W/data \
        /tmp/ckpts/refinement-epoch010.keras /tmp/ckpts/refinement-epoch030.keras
"""

from __future__ import annotations

import argparse
import json
import os

import keras

from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.evaluation.attention_evaluation import evaluate_attention
from conceptmask_tf.evaluation.eval_set import load_eval_set
from conceptmask_tf.evaluation.predictors import AttentionMaps, compiled
from conceptmask_tf.models import to_fully_convolutional
from conceptmask_tf.training import artifacts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", required=True, help="holds concepts/ and models/embedding/")
    parser.add_argument("--data_root", required=True, help="data root with eval/<split>.json")
    parser.add_argument("--image_size", type=int, default=128, help="side the maps are made at")
    parser.add_argument("--splits", default="strong,weak_box")
    parser.add_argument("checkpoints", nargs="+", help="stage-2 .keras files")
    args = parser.parse_args()

    embeddings = ConceptEmbeddings.load(os.path.join(args.work_dir, "concepts"))
    eval_set = load_eval_set(args.data_root, embeddings)
    stage1 = artifacts.load_stage_model(os.path.join(args.work_dir, "models", "embedding"),
                                        "embedding")
    original = to_fully_convolutional(stage1)
    splits = args.splits.split(",")
    for path in args.checkpoints:
        maps = AttentionMaps(original, keras.saving.load_model(path), None, args.image_size)
        scores = evaluate_attention(compiled(maps, embeddings.dim), eval_set, maps.variants,
                                    splits=splits, progress=False)
        table = {split: {variant: {"pointing_game": round(row["pointing_game"], 3),
                                   "soft_iou": round(row["soft_iou"], 3)}
                         for variant, row in rows.items() if row.get("pointing_game") is not None}
                 for split, rows in scores.items()}
        print(os.path.basename(path), json.dumps(table), flush=True)


if __name__ == "__main__":
    main()
