"""Table 1 metrics of stage-2 networks: compare checkpoints, schedules or loss settings.

Scores stage-2 networks (`refinement.keras` of several runs, or the per-epoch checkpoints
a run keeps in `<model_dir>/checkpoints/`; copy them elsewhere while a long run goes on,
since only the newest are kept) with the evaluation's attention code (`AttentionMaps`,
`evaluate_attention`: pointing game and soft IoU against the ground-truth boxes, and the
mask columns), per concept then over concepts, next to the stage-1 ("original") maps. By
default on the VALIDATION split: these figures choose settings, so they must not come from
the test split. `--types part` adds rows for the concepts of those types (world.json of a
concept world), e.g. the parts that the spatial discrimination loss may suppress.

    conceptmask-train-refinement --flagfile=flags/world_stage2.cfg --data_root=W/data \
        --concepts_dir=W/concepts --embedding_model_dir=W/models/embedding \
        --model_dir=/tmp/refinement30 --epochs=30 --summary_images=0
    python benchmarks/attention_checkpoints.py --work_dir W --data_root W/data --types part \
        W/models/refinement/refinement.keras /tmp/refinement30/refinement.keras
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import keras

from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.evaluation.attention_evaluation import evaluate_attention
from conceptmask_tf.evaluation.eval_set import EvalSet, load_eval_set
from conceptmask_tf.evaluation.predictors import AttentionMaps, compiled
from conceptmask_tf.models import stage_files, to_fully_convolutional

METRICS = ("pointing_game", "soft_iou", "pointing_game_mask", "soft_iou_mask")


def concepts_of_types(data_root: str, types: list[str]) -> set[str]:
    """Concepts of the given types in a concept world's world.json."""
    with open(os.path.join(data_root, "world.json"), encoding="utf-8") as f:
        return {c["name"] for c in json.load(f)["concepts"] if c["type"] in types}


def restricted(eval_set: EvalSet, concepts: set[str]) -> EvalSet:
    """The eval set with only the pairs of `concepts` (images left without one dropped)."""
    images = []
    for image in eval_set.images:
        pairs = tuple(p for p in image.pairs if p.concept in concepts)
        if pairs:
            images.append(dataclasses.replace(image, pairs=pairs))
    return dataclasses.replace(eval_set, images=images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", required=True, help="holds concepts/ and models/embedding/")
    parser.add_argument("--data_root", required=True, help="data root with val/ or eval/ files")
    parser.add_argument("--split", choices=("val", "test"), default="val",
                        help="val (default: for choosing) or test (for reporting)")
    parser.add_argument("--image_size", type=int, default=128, help="side the maps are made at")
    parser.add_argument("--splits", default="strong,weak_box")
    parser.add_argument("--types", default="", help="comma-separated world concept types "
                                                    "scored on their own too, e.g. part")
    parser.add_argument("checkpoints", nargs="+", help="stage-2 .keras files")
    args = parser.parse_args()

    embeddings = ConceptEmbeddings.load(os.path.join(args.work_dir, "concepts"))
    eval_set = load_eval_set(args.data_root, embeddings,
                             which="val" if args.split == "val" else "eval")
    sets = {"all": eval_set}
    for kind in filter(None, args.types.split(",")):
        sets[kind] = restricted(eval_set, concepts_of_types(args.data_root, [kind]))
    stage1 = stage_files.load_stage_model(os.path.join(args.work_dir, "models", "embedding"),
                                        "embedding")
    original = to_fully_convolutional(stage1)
    splits = args.splits.split(",")
    for path in args.checkpoints:
        maps = AttentionMaps(original, keras.saving.load_model(path), None, args.image_size)
        predict = compiled(maps, embeddings.dim)
        for name, subset in sets.items():
            scores = evaluate_attention(predict, subset, maps.variants, splits=splits,
                                        progress=False)
            table = {split: {variant: {m: round(row[m], 3) for m in METRICS}
                             | {"concepts": row["concepts"]}
                             for variant, row in rows.items()
                             if row.get("pointing_game") is not None}
                     for split, rows in scores.items() if split in splits}
            print(json.dumps({"checkpoint": path, "split": args.split, "concepts": name,
                              "scores": table}), flush=True)


if __name__ == "__main__":
    main()
