"""Stage-3 tf.data pipeline against bare JPEG decoding (issue 6: >= 50 % of its images/s).

Reads the COCO masks of a data root as stage-3 training does (`mask_targets` without the
concept filter: every mask concept kept) and makes two endless datasets:

    pipeline  `segmentation_dataset` in training mode with repeat=True, as training
              makes it (shuffle, decode, random crop + flip, RLE mask decoding, resize of
              image and masks to --image_size, batch);
    decode    `tf.data.Dataset.from_tensor_slices(paths).map(read_file + decode_jpeg,
              num_parallel_calls=AUTOTUNE).ragged_batch(batch_size)` over the same files
              (one path per example: the pipeline decodes an image once per mask concept),
              the same parallelism and threads, repeated.

Steady state, as in training (which makes its iterator once): a chunk makes a new
iterator and pulls one batch untimed (making the iterator costs ~0.4 s for the
pipeline's map function), then times --batches batches, then drops the iterator, so no
other iterator works in the background while one is timed. After --warmup batches of
each, --repeats chunks of each are timed, in an order rotated per repetition. Prints the
median images (examples) per second of each and their ratio.

The stage-3 presets of the concept world are the defaults (flags/world_stage3.cfg:
image_size 128, batch 16, scale_jitter 0.1). Make a data root first, e.g.

    conceptmask-world --flagfile=flags/world_default.cfg --num_images=600 \
        --num_eval_images=100 --out_dir=/tmp/bench_world
    python benchmarks/input_pipeline.py --data_root /tmp/bench_world [--repeats 10] \
        [--batches 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def take(iterator: Any, batches: int) -> int:
    """Pulls `batches` batches; returns the number of examples."""
    import tensorflow as tf

    count = 0
    for _ in range(batches):
        count += int(tf.shape(tf.nest.flatten(next(iterator))[0])[0])
    return count


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--scale_jitter", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed chunks of each, alternating")
    parser.add_argument("--batches", type=int, default=30, help="batches per chunk")
    parser.add_argument("--warmup", type=int, default=10, help="untimed batches of each")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    load = os.getloadavg()

    import tensorflow as tf

    from conceptmask_tf.data.coco import read_coco_instances
    from conceptmask_tf.data.datasets.segmentation import segmentation_dataset
    from conceptmask_tf.data.layout import DataRoot
    from conceptmask_tf.data.skips import SkipCounter

    root = DataRoot(args.data_root)
    masked = [image for image in read_coco_instances(root.coco_instances) if image.masks]

    pipeline = segmentation_dataset(
        args.data_root, masked, None, image_size=args.image_size, batch_size=args.batch_size,
        training=True, seed=0, scale_jitter=args.scale_jitter, skips=SkipCounter(),
        repeat=True)
    paths = [os.path.join(args.data_root, image.image) for image in masked
             for _ in image.masks]

    def decode(path: tf.Tensor) -> tf.Tensor:
        return tf.io.decode_jpeg(tf.io.read_file(path), channels=3)

    # Images differ in size: batch as ragged so no padding work is added.
    decoded = (tf.data.Dataset.from_tensor_slices(paths)
               .repeat().map(decode, num_parallel_calls=tf.data.AUTOTUNE)
               .ragged_batch(args.batch_size).prefetch(tf.data.AUTOTUNE))
    datasets = {"pipeline": pipeline, "decode": decoded}
    for dataset in datasets.values():  # function tracing, file cache
        take(iter(dataset), args.warmup)
    rates: dict[str, list[float]] = {name: [] for name in datasets}
    names = list(datasets)
    for r in range(args.repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            iterator = iter(datasets[name])
            take(iterator, 1)  # untimed: making the iterator, first batch
            start = time.perf_counter()
            count = take(iterator, args.batches)
            rates[name].append(count / (time.perf_counter() - start))
            del iterator  # stops its background work before the next one is timed
    medians = {name: statistics.median(values) for name, values in rates.items()}
    result = {"data_root": args.data_root, "examples": len(paths), "batches": args.batches,
              "distinct_images": len(masked), "repeats": args.repeats,
              "loadavg_start": load, "median_images_per_s": medians,
              "ratio": medians["pipeline"] / medians["decode"],
              "loadavg_end": os.getloadavg()}
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{len(paths)} examples ({len(masked)} images) per pass; chunks of "
          f"{args.batches} batches of {args.batch_size}")
    for name, value in medians.items():
        print(f"{name}: median {value:.0f} images/s over {args.repeats} chunks")
    print(f"ratio pipeline / decode: {result['ratio']:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
