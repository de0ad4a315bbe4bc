"""Full two-scale Concept Mask inference against a bare ResNet-50 pass (issue 6: <= 1.5x).

Builds the composed `ConceptMask` with a ResNet-50 backbone (random weights) at the paper's
stage-3 preset (flags/paper_stage3.cfg: image_size 300, attention scales 1.0, 2.3333333,
i.e. passes at 300 and 700 px; D = 512, segmentation widths 32-64-96-128 / 64-32-16; no
weak-concept rule and presence from the stage-2 pass, so that the only backbone passes are
the two attention scales) and feeds it one --image_side px image (the paper's 700-ish
input) with one concept. Against it: `keras.applications.ResNet50(weights=None,
include_top=False)` alone on a 700 px image, and (for the floor) on a 300 px one. Batch 1,
all as graph-mode `tf.function`s (no XLA); after warm-up each repetition runs each once,
in an order rotated per repetition; prints the medians, the ratio of the model's to the
700 px pass's, and the floor (300 px + 700 px passes) / 700 px pass (about 1.27,
DESIGN.md §9).

    python benchmarks/pipeline_vs_backbone.py [--image_side 700] [--repeats 20] \
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

PAPER_DIM = 512
PAPER_VOCAB = 1000  # coarse maps of all V concepts feed the refinement head
PAPER_IMAGE_SIZE = 300
PAPER_SCALES = (1.0, 2.3333333)


def build_paper_model(vocabulary: int, seed: int = 0) -> Any:
    """A random-weight ConceptMask with a ResNet-50 backbone at the paper's scales."""
    from benchmarks.random_models import random_concept_mask

    model, _ = random_concept_mask("resnet50", PAPER_DIM, vocabulary,
                                   image_size=PAPER_IMAGE_SIZE, scales=PAPER_SCALES, seed=seed)
    return model


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_side", type=int, default=700,
                        help="side of the input image (the paper feeds ~700 px)")
    parser.add_argument("--vocabulary", type=int, default=PAPER_VOCAB,
                        help="V of the stage-2 network's coarse maps")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    load = os.getloadavg()

    import keras
    import tensorflow as tf

    model = build_paper_model(args.vocabulary)
    backbone = keras.applications.ResNet50(weights=None, include_top=False)
    side = round(PAPER_SCALES[-1] * PAPER_IMAGE_SIZE)  # 700

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                  tf.TensorSpec([None, None, PAPER_DIM], tf.float32)])
    def full(image, vectors):
        return model({"image": image, "word_vectors": vectors}, training=False)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def bare(image):
        return backbone(image, training=False)

    rng = np.random.default_rng(1)
    image = tf.constant(rng.uniform(0, 255, (1, args.image_side, args.image_side, 3)),
                        tf.float32)
    image_700 = tf.constant(rng.uniform(0, 255, (1, side, side, 3)), tf.float32)
    image_300 = tf.constant(rng.uniform(0, 255, (1, PAPER_IMAGE_SIZE, PAPER_IMAGE_SIZE, 3)),
                            tf.float32)
    vectors = tf.constant(rng.normal(size=(1, 1, PAPER_DIM)), tf.float32)
    calls = {"concept_mask": lambda: full(image, vectors),
             "resnet50_700": lambda: bare(image_700),
             "resnet50_300": lambda: bare(image_300)}
    for call in calls.values():
        for _ in range(args.warmup):
            _block(call())
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(args.repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            _block(calls[name]())
            times[name].append(1000 * (time.perf_counter() - start))
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = [a / b for a, b in zip(times["concept_mask"], times["resnet50_700"])]
    result = {"image_side": args.image_side, "repeats": args.repeats, "loadavg_start": load,
              "median_ms": medians,
              "ratio": medians["concept_mask"] / medians["resnet50_700"],
              "median_of_pair_ratios": statistics.median(ratios),
              "floor": (medians["resnet50_300"] + medians["resnet50_700"])
              / medians["resnet50_700"],
              "loadavg_end": os.getloadavg()}
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for name, value in medians.items():
        print(f"{name}: median {value:.1f} ms over {args.repeats}")
    print(f"ratio of medians: {result['ratio']:.2f} (median of per-repetition ratios "
          f"{result['median_of_pair_ratios']:.2f}); floor (300 + 700 px passes) / 700 px "
          f"pass: {result['floor']:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


def _block(outputs: Any) -> None:
    """Forces the outputs to host memory."""
    import tensorflow as tf

    for tensor in tf.nest.flatten(outputs):
        tensor.numpy()


if __name__ == "__main__":
    main()
