"""Stage 1's input path at the paper's scale: start-up, throughput and memory against N.

Builds a tag manifest (tags.jsonl) of N entries over a pool of JPEG files (paths repeat
the pool's files; --corrupt_fraction of the entries point at corrupt copies) and, for each
N, in a fresh process, measures what a stage-1 run pays before and while it trains:

    annotations   reading the manifest (`read_tag_corpus`): linear in N by nature;
    first step    building `embedding_dataset` (training mode, seeded shuffle with the
                  config's default bounded buffer, repeat, in-pipeline image checks) and
                  pulling its first batch: should not grow with N;
    pipeline      steady images/s of that dataset over --batches batches;
    decode        steady images/s of bare decoding of the same files (read_file +
                  decode_jpeg + resize to --image_size, the same parallelism, batched);
    peak memory   the process's peak resident set (ru_maxrss).

Steady throughput is timed after --warmup batches, pipeline and decode alternating in
--repeats chunks (the median of each; the ratio pipeline / decode is the figure, robust
to a shared machine). Growth from the smallest to the largest N extrapolates to 6M.

    python benchmarks/data_scale.py --sizes 100000,1000000 --corrupt_fraction 0.01 \
        [--pool 64] [--pool_side 480] [--batches 40] --out /tmp/data_scale.json

With --source shards the manifest's examples are first written to sharded TFRecords
(`conceptmask_tf.data.shards.write_shards`, --num_shards files, --writer_threads at once,
each image read and decoded once and bad ones left out, counted; in a fresh process:
examples/s, MB/s and the writer's peak memory), and the run reads them
(`embedding_dataset_from_shards`, images decoded in the graph): "annotations" is then
loading the shard index.

The pool is --pool JPEG files of --pool_side x 4/3 --pool_side pixels (smooth random
images, quality 90), written once under --work_dir.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

DIM = 32  # the world presets' word dimension (targets are [N, DIM])


def make_pool(directory: str, count: int, side: int) -> list[str]:
    """`count` JPEGs of side x 4/3 side (smooth random images) and 8 corrupt copies."""
    import numpy as np
    from PIL import Image

    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(count):
        name = f"pool_{i:03d}.jpg"
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            small = rng.integers(0, 256, (side // 16, side // 12, 3), np.uint8)
            Image.fromarray(small).resize((side * 4 // 3, side), Image.BICUBIC).save(
                path, quality=90)
        names.append(name)
    for i in range(8):  # truncated copies: TensorFlow cannot decode them
        path = os.path.join(directory, f"corrupt_{i}.jpg")
        if not os.path.exists(path):
            with open(os.path.join(directory, names[i]), "rb") as f:
                data = f.read()
            with open(path, "wb") as f:
                f.write(data[:len(data) // 3])
    return names


def write_manifest(path: str, pool: list[str], size: int, corrupt_fraction: float) -> None:
    """tags.jsonl of `size` entries cycling the pool; every 1/fraction-th a corrupt one."""
    every = round(1 / corrupt_fraction) if corrupt_fraction > 0 else 0
    with open(path, "w", encoding="utf-8") as f:
        for i in range(size):
            if every and i % every == every // 2:
                image = f"images/corrupt_{(i // every) % 8}.jpg"
            else:
                image = f"images/{pool[i % len(pool)]}"
            f.write(json.dumps({"image": image, "tags": ["thing"]}) + "\n")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One size, in this process (the parent runs each in a fresh one)."""
    import numpy as np
    import tensorflow as tf

    from conceptmask_tf.data.datasets.embedding import (
        embedding_dataset,
        embedding_dataset_from_shards,
    )
    from conceptmask_tf.data.images import resize_image
    from conceptmask_tf.data.shards import ShardSet
    from conceptmask_tf.data.skips import SkipCounter
    from conceptmask_tf.data.tags import read_tag_corpus
    from conceptmask_tf.training.config import EmbeddingConfig

    buffer = EmbeddingConfig.__dataclass_fields__["shuffle_buffer"].default
    options = {"image_size": args.image_size, "batch_size": args.batch_size, "training": True,
               "seed": 0, "repeat": True, "shuffle_buffer": buffer, "max_bad_fraction": 0.1}
    skips = SkipCounter()
    start = time.perf_counter()
    if args.source == "shards":
        shards = ShardSet.load(os.path.join(args.work_dir, "shards"))
        entries = shards.num_examples
        annotations_s = time.perf_counter() - start
        start = time.perf_counter()
        dataset = embedding_dataset_from_shards(shards, skips=skips, **options)
        good = [os.path.join(args.work_dir, "images", p)
                for p in sorted(os.listdir(os.path.join(args.work_dir, "images")))
                if p.startswith("pool_")]
    else:
        corpus = read_tag_corpus(os.path.join(args.work_dir, "tags.jsonl"), with_images=True)
        paths = [str(p) for p in corpus.images]
        entries = len(paths)
        annotations_s = time.perf_counter() - start
        start = time.perf_counter()
        dataset = embedding_dataset(args.work_dir, paths,
                                    np.zeros((len(paths), DIM), np.float32), skips=skips,
                                    **options)
        good = [os.path.join(args.work_dir, p) for p in dict.fromkeys(paths)
                if "corrupt" not in p]
    pipeline = iter(dataset)
    next(pipeline)
    first_step_s = time.perf_counter() - start

    def bare(path):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        return resize_image(image, args.image_size)

    decode = iter(tf.data.Dataset.from_tensor_slices(good).repeat().map(
        bare, num_parallel_calls=tf.data.AUTOTUNE).batch(args.batch_size).prefetch(
        tf.data.AUTOTUNE))

    def timed(iterator) -> float:
        begin = time.perf_counter()
        for _ in range(args.batches):
            next(iterator)
        return args.batches * args.batch_size / (time.perf_counter() - begin)

    for iterator in (pipeline, decode):
        for _ in range(args.warmup):
            next(iterator)
    rates = {"pipeline": [], "decode": []}
    for _ in range(args.repeats):
        rates["pipeline"].append(timed(pipeline))
        rates["decode"].append(timed(decode))
    pipeline_rate = statistics.median(rates["pipeline"])
    decode_rate = statistics.median(rates["decode"])
    return {"source": args.source, "entries": entries, "shuffle_buffer": buffer,
            "annotations_s": annotations_s, "first_step_s": first_step_s,
            "pipeline_images_per_s": pipeline_rate, "decode_images_per_s": decode_rate,
            "ratio": pipeline_rate / decode_rate,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "skipped": skips.as_dict()}


def write(args: argparse.Namespace) -> dict[str, Any]:
    """Writes the manifest's examples to shards, in this process; the writer's figures."""
    import numpy as np

    from conceptmask_tf.data.datasets.embedding import embedding_elements
    from conceptmask_tf.data.shards import write_shards
    from conceptmask_tf.data.tags import read_tag_corpus

    corpus = read_tag_corpus(os.path.join(args.work_dir, "tags.jsonl"), with_images=True)
    paths = [str(p) for p in corpus.images]
    elements = embedding_elements(args.work_dir, paths, np.zeros((len(paths), DIM), np.float32))
    directory = os.path.join(args.work_dir, "shards")
    start = time.perf_counter()
    written = write_shards(directory, elements, stage="embedding", num_shards=args.num_shards,
                           num_threads=args.writer_threads, overwrite=True,
                           show_progress=False)
    seconds = time.perf_counter() - start
    size = sum(os.path.getsize(p) for p in written.paths)
    return {"entries": written.num_examples, "files": len(written.files),
            "write_s": seconds, "examples_per_s": written.num_examples / seconds,
            "mb_per_s": size / 1e6 / seconds, "shards_gb": size / 1e9,
            "writer_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--corrupt_fraction", type=float, default=0.01)
    parser.add_argument("--pool", type=int, default=64)
    parser.add_argument("--pool_side", type=int, default=480)
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work_dir", default="/tmp/conceptmask_data_scale")
    parser.add_argument("--out", default=None)
    parser.add_argument("--source", choices=("data_root", "shards"), default="data_root")
    parser.add_argument("--num_shards", type=int, default=64)
    parser.add_argument("--writer_threads", type=int, default=4)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure or args.write:  # the child: one size, its manifest already written
        print(json.dumps(measure(args) if args.measure else write(args)))
        return []
    pool = make_pool(os.path.join(args.work_dir, "images"), args.pool, args.pool_side)
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        fractions = ([args.corrupt_fraction] if args.source == "shards"
                     else sorted({0.0, args.corrupt_fraction}))
        for fraction in fractions:
            write_manifest(os.path.join(args.work_dir, "tags.jsonl"), pool, size, fraction)
            child = [sys.executable, os.path.abspath(__file__), f"--source={args.source}",
                     f"--work_dir={args.work_dir}", f"--image_size={args.image_size}",
                     f"--batch_size={args.batch_size}", f"--batches={args.batches}",
                     f"--warmup={args.warmup}", f"--repeats={args.repeats}",
                     f"--num_shards={args.num_shards}",
                     f"--writer_threads={args.writer_threads}"]
            result = {"corrupt_fraction": fraction}
            if args.source == "shards":
                result["writer"] = _child(child + ["--write"])
            result.update(_child(child + ["--measure"]))
            results.append(result)
            print(json.dumps(result), flush=True)
    clean = sorted((r for r in results if r["corrupt_fraction"] == min(fractions)),
                   key=lambda r: r["entries"])
    if len(clean) >= 2:
        small, large = clean[0], clean[-1]
        span = large["entries"] - small["entries"]
        for key in ("annotations_s", "first_step_s", "peak_rss_mb"):
            per_entry = (large[key] - small[key]) / span
            print(f"{key}: {small[key]:.2f} at {small['entries']}, {large[key]:.2f} at "
                  f"{large['entries']}; at 6M by the measured growth: "
                  f"{large[key] + per_entry * (6_000_000 - large['entries']):.2f}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return results


def _child(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, check=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
