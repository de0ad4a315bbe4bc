"""Cost of K concepts against one concept on one image (issue 6: K = 32 <= 1.5x K = 1).

Builds the composed `ConceptMask` of the concept-world presets with random weights
(flags/world_stage*.cfg: small_convnet backbone, D = 32, embedding head 256-256, stage-2
head H = 64, image_size 128, attention scales 1.0, 2.0, segmentation widths 32-64-96-128 /
64-32-16, weak-concept rule with P supervised concepts, presence from the stage-1 network)
and times one image of --image_side px with K = 1 and K = --num_concepts concept vectors,
each as a compiled `tf.function` (graph mode, no XLA). After warm-up, each repetition runs
both K once, in an order alternating per repetition, so that load from other processes
hits both alike; prints the medians and their ratio.

With --preset paper the model is the paper's (ResNet-50 backbone, D = 512, V = 1000,
stage-2 head H = 256, image_size 300, attention passes at 300 and 700 px, 750
box-supervised concepts): the per-image backbone passes dominate, as in real use.

With --profile it also prints the costliest TensorFlow ops at each K (profiler trace),
which shows what grows with K. With --compare_former it also times (in the same
alternation) the model traced with the layer code before the issue-6 fix
(`former_implementations`: the decoder block before it projected before upsampling)
and prints the largest output difference between the two.

    python benchmarks/multi_concept.py [--image_side 512] [--num_concepts 32] \
        [--preset world|paper] [--repeats 30] [--profile] [--compare_former] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

WORLD_DIM = 32  # pipeline "world" preset word dimension
WORLD_VOCAB = 75  # about the default world's vocabulary
WORLD_SUPERVISED = 30  # box/mask-supervised concepts (weak-concept rule active)
PAPER_SUPERVISED = 750  # the paper's OIVG-750 box-supervised concepts (§4.2)


def build_world_model(seed: int = 0) -> tuple[Any, np.ndarray]:
    """A random-weight ConceptMask of the world presets; returns (model, vectors [V, D])."""
    from benchmarks.random_models import random_concept_mask

    return random_concept_mask("small_convnet", WORLD_DIM, WORLD_VOCAB, image_size=128,
                               scales=(1.0, 2.0), hidden_dims=(256, 256),
                               refinement_hidden_dim=64, supervised=WORLD_SUPERVISED,
                               presence=True, seed=seed)


def build_paper_model(seed: int = 0) -> tuple[Any, np.ndarray]:
    """A random-weight ConceptMask of the paper's presets (ResNet-50, 300 / 700 px)."""
    from benchmarks.pipeline_vs_backbone import (
        PAPER_DIM,
        PAPER_IMAGE_SIZE,
        PAPER_SCALES,
        PAPER_VOCAB,
    )
    from benchmarks.random_models import random_concept_mask

    return random_concept_mask("resnet50", PAPER_DIM, PAPER_VOCAB,
                               image_size=PAPER_IMAGE_SIZE, scales=PAPER_SCALES,
                               supervised=PAPER_SUPERVISED, presence=True, seed=seed)


def model_function(model: Any) -> Callable[[Any, Any], Any]:
    """The whole model as a graph-mode tf.function (dynamic H, W, K)."""
    import tensorflow as tf

    dim = model.refinement.embedding.embedding_dim

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                  tf.TensorSpec([None, None, dim], tf.float32)])
    def run(image, vectors):
        return model({"image": image, "word_vectors": vectors}, training=False)

    return run


def former_implementations() -> contextlib.AbstractContextManager:
    """Patches in the `ConceptDecoderBlock` code before its project-then-upsample fix.

    The block upsampled the coarser level's F' channels and then projected them to F.
    Tracing a function inside this context gives the former graph (same weights).
    (The earlier `ResizeMaps` fix, two transposes dropped, is measured in BENCHMARKS.md.)
    """
    import tensorflow as tf

    from conceptmask_tf.models import ConceptDecoderBlock
    from conceptmask_tf.models.tensor_ops import fold_concepts, resize, unfold_concepts

    def decoder_call(self, image_features, attention, previous=None):
        num_concepts = tf.shape(attention)[1]
        x = (tf.expand_dims(self.image_projection(image_features), 1)
             + self.attention_projection(attention))
        if previous is not None:
            size = tf.shape(image_features)[1:3]
            upsampled = unfold_concepts(resize(fold_concepts(previous), size), num_concepts)
            x = x + self.previous_projection(upsampled)
        x = tf.nn.relu(self.fuse_norm(fold_concepts(x)))
        x = tf.nn.relu(self.conv_norm(self.conv(x)))
        return unfold_concepts(x, num_concepts)

    @contextlib.contextmanager
    def patched():
        saved = ConceptDecoderBlock.call
        ConceptDecoderBlock.call = decoder_call
        try:
            yield
        finally:
            ConceptDecoderBlock.call = saved

    return patched()


def op_profile(run: Callable[[], Any], repeats: int, top: int = 12) -> list[tuple[str, float]]:
    """ms per call of the `top` costliest TensorFlow ops of `run` (TF profiler trace)."""
    import glob
    import tempfile

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(repeats):
            _block(run())
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
            space.ParseFromString(f.read())
    totals: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and " " not in name and "::" not in name:  # "node:OpType"
                    totals[name] += event.duration_ps / 1e9 / repeats
    return totals.most_common(top)


def alternate(calls: dict[str, Callable[[], Any]], repeats: int, warmup: int
              ) -> dict[str, list[float]]:
    """ms per call of each named call; the order is rotated every repetition."""
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            _block(calls[name]())
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            _block(calls[name]())
            times[name].append(1000 * (time.perf_counter() - start))
    return times


def _block(outputs: Any) -> None:
    """Forces the outputs to host memory (the timed work includes the copy)."""
    import tensorflow as tf

    for tensor in tf.nest.flatten(outputs):
        tensor.numpy()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=("world", "paper"), default="world",
                        help="world: the concept-world presets; paper: ResNet-50 at the "
                        "paper's 300 / 700 px attention passes (flags/paper_stage3.cfg)")
    parser.add_argument("--image_side", type=int, default=512)
    parser.add_argument("--num_concepts", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="also print the costliest ops at each K (TF profiler)")
    parser.add_argument("--compare_former", action="store_true",
                        help="also time the layer code before the fix, alternating")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    load = os.getloadavg()

    import tensorflow as tf

    model, vectors = build_world_model() if args.preset == "world" else build_paper_model()
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (1, args.image_side, args.image_side, 3)).astype(np.float32)
    ks = (1, args.num_concepts)
    # The first K vocabulary rows: at K = 32, 30 supervised concepts and 2 weak ones.
    queries = {k: tf.constant(vectors[np.arange(k) % len(vectors)][None]) for k in ks}
    image_t = tf.constant(image)
    run = model_function(model)
    calls = {f"K={k}": (lambda k=k: run(image_t, queries[k])) for k in ks}
    if args.compare_former:
        former = model_function(model)
        with former_implementations():  # traced here, for both K
            for k in ks:
                _block(former(image_t, queries[k]))
        calls.update({f"former K={k}": (lambda k=k: former(image_t, queries[k])) for k in ks})
    times = alternate(calls, args.repeats, args.warmup)
    medians = {name: statistics.median(values) for name, values in times.items()}
    result: dict[str, Any] = {
        "preset": args.preset, "image_side": args.image_side, "ks": list(ks), "repeats": args.repeats,
        "loadavg_start": load, "median_ms": medians,
        "ratio": medians[f"K={ks[1]}"] / medians[f"K={ks[0]}"]}
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for name, value in medians.items():
        print(f"{name}: median {value:.1f} ms over {args.repeats}")
    print(f"ratio K={ks[1]} / K=1: {result['ratio']:.2f}")
    if args.compare_former:
        result["former_ratio"] = medians[f"former K={ks[1]}"] / medians[f"former K={ks[0]}"]
        new, old = run(image_t, queries[ks[1]]), former(image_t, queries[ks[1]])
        result["max_abs_diff_vs_former"] = {
            key: float(np.abs(new[key].numpy() - old[key].numpy()).max()) for key in new}
        print(f"former ratio K={ks[1]} / K=1: {result['former_ratio']:.2f}; max abs diff "
              f"of the outputs: {result['max_abs_diff_vs_former']}")
    if args.profile:
        result["op_profile_ms"] = {}
        for k in ks:
            top = op_profile(calls[f"K={k}"], max(3, args.repeats // 5))
            result["op_profile_ms"][f"K={k}"] = top
            print(f"costliest ops at K={k} (ms per call):")
            for name, ms in top:
                print(f"  {ms:7.1f}  {name}")
    result["loadavg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
