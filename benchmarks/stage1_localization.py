"""Do stage-1 coarse maps localise? Pointing game per split at the map's own resolution.

For each present (image, concept) pair of the chosen split files, the stage-1 network in
fully-convolutional form gives the coarse map <e_ij, w> (cosine, eq. 1) at the attention
resolution (16 x 16 for the world preset); a hit is its maximum falling in a cell that the
concept's boxes cover for at least half its area. Printed next to chance (the mean share of
covered cells, what a random peak would score) and the share of maxima on the map's border
(a peak drawn to the padding). By default on the VALIDATION split: these figures choose
settings.

    python benchmarks/stage1_localization.py --work_dir W --data_root W/data \
        W/models/embedding/embedding.keras /tmp/other_stage1/embedding.keras
"""

from __future__ import annotations

import argparse
import os

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.data.layout import SPLITS
from conceptmask_tf.evaluation.eval_set import load_eval_set
from conceptmask_tf.models import ConceptAttention, to_fully_convolutional


def score(model_path: str, eval_set, embeddings: ConceptEmbeddings, data_root: str,
          image_size: int, similarity: str) -> dict:
    """Pointing game, chance and border share per split for one stage-1 model."""
    fcn = to_fully_convolutional(keras.saving.load_model(model_path, compile=False))
    attention = ConceptAttention(similarity)
    hits = {s: [] for s in SPLITS}
    chance = {s: [] for s in SPLITS}
    border = []
    for image in eval_set.images:
        pairs = [p for p in image.pairs if p.present]
        if not pairs:
            continue
        pixels = np.asarray(Image.open(os.path.join(data_root, image.image)).convert("RGB"),
                            np.float32)
        resized = tf.image.resize(pixels[None], (image_size, image_size))
        embedding_map = fcn(resized, training=False)["embedding_map"]
        vectors = np.stack([embeddings.vector(p.concept) for p in pairs])[None]
        maps = keras.ops.convert_to_numpy(attention(embedding_map, vectors))[0]  # [h, w, K]
        height, width, _ = maps.shape
        for k, pair in enumerate(pairs):
            box = pair.box_truth().astype(np.float32)[..., None]
            cells = tf.image.resize(box, (height, width), method="area").numpy()[..., 0] > 0.5
            peak = int(np.argmax(maps[..., k]))
            row, column = divmod(peak, width)
            hits[pair.split].append(bool(cells.reshape(-1)[peak]))
            chance[pair.split].append(float(cells.mean()))
            border.append(row in (0, height - 1) or column in (0, width - 1))
    result = {s: {"pointing_game": float(np.mean(hits[s])), "chance": float(np.mean(chance[s])),
                  "pairs": len(hits[s])} for s in SPLITS if hits[s]}
    result["border_share_of_maxima"] = float(np.mean(border))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="stage-1 embedding.keras files")
    parser.add_argument("--work_dir", required=True, help="holds concepts/")
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--similarity", choices=("cosine", "dot"), default="cosine")
    args = parser.parse_args()
    embeddings = ConceptEmbeddings.load(os.path.join(args.work_dir, "concepts"))
    eval_set = load_eval_set(args.data_root, embeddings, splits=SPLITS,
                             which="val" if args.split == "val" else "eval")
    for path in args.models:
        result = score(path, eval_set, embeddings, args.data_root, args.image_size,
                       args.similarity)
        print(f"{path} ({args.split}, {args.similarity})")
        for split in SPLITS:
            if split in result:
                r = result[split]
                print(f"  {split:10s} pointing game {r['pointing_game']:.3f}  "
                      f"chance {r['chance']:.3f}  ({r['pairs']} pairs)")
        print(f"  maxima on the border {result['border_share_of_maxima']:.3f}")


if __name__ == "__main__":
    main()
