"""CPU latency of one image in each serving runtime: SavedModel, TFLite float32, TFLite
dynamic-range and ONNX Runtime, with K = 1 and K = 32 concepts.

Exports a pipeline models folder like `conceptmask-export --tflite --onnx` (the checked
SavedModel TF Serving runs, and the conversions of its check-free twin), opens every file
through `conceptmask_tf.serving.runtimes` (the runners `conceptmask-segment` uses, host
input checks included) and times single calls side by side: after warm-up calls, each
repetition runs every (runtime, K) once, in an order rotated per repetition, so that load
from other processes hits all runtimes alike. Prints the median and 90th percentile in ms,
the ratio of each median to the SavedModel's; then each runtime's parity with the SavedModel
on a few images (`parity`).

    /work/venv/bin/python benchmarks/export_latency.py \
        [--models_dir conceptmask_demo/models] [--concepts_dir D] [--image_side 256] \
        [--repeats 30] [--threads N] [--json out.json]

Without a models folder (`--models_dir ""`, or the default one missing) it exports an
untrained small model instead (architecture only: the latency, not the masks, matters).
Every runtime gets --threads CPU threads (default: all cores): TensorFlow's intra- and
inter-op pools, the TFLite interpreter's and onnxruntime's intra-op pool.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

RUNTIMES = ("saved_model", "tflite_float32", "tflite_dynamic_range", "onnxruntime")


def export_all(models_dir: str | None, concepts_dir: str | None, export_dir: str
               ) -> tuple[dict[str, str], np.ndarray]:
    """Writes the SavedModel and its conversions; returns (runtime -> path, vectors [V, D])."""
    from conceptmask_tf.serving import exporter

    if models_dir:
        from conceptmask_tf.concepts.embeddings import ConceptEmbeddings

        result = exporter.export_segmenter(models_dir, export_dir, concepts_dir=concepts_dir,
                                           serving_root=None, tflite=True, onnx=True)
        # The vocabulary the export stores beside the SavedModel (no second model load).
        vectors = ConceptEmbeddings.load(os.path.join(result["saved_model"],
                                                      exporter.EXTRA_DIR)).vectors
    else:
        result, vectors = _export_untrained(export_dir)
    paths = {"saved_model": result["saved_model"], "tflite_float32": result["tflite"],
             "tflite_dynamic_range": result["tflite_dynamic_range"],
             "onnxruntime": result["onnx"]}
    return paths, vectors


def _export_untrained(export_dir: str) -> tuple[dict[str, str], np.ndarray]:
    """A random-weight ConceptMask of the concept-world sizes (S = 128, D = 32, V = 64)."""
    from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
    from conceptmask_tf.concepts.vocabulary import Vocabulary
    from conceptmask_tf.models import (
        ConceptMask,
        EmbeddingModel,
        RefinementModel,
        SegmentationModel,
        to_fully_convolutional,
    )
    from conceptmask_tf.serving import convert, exporter

    rng = np.random.default_rng(0)
    dim, vocab = 32, 64
    vectors = rng.normal(size=(vocab, dim)).astype(np.float32)
    names = tuple(f"concept{i:02d}" for i in range(vocab))
    embeddings = ConceptEmbeddings(Vocabulary(names, np.arange(vocab, 0, -1), vocab + 1),
                                   vectors)
    embedding = EmbeddingModel("small_convnet", dim)
    refinement = RefinementModel(to_fully_convolutional(embedding), vocab, vectors)
    model = ConceptMask(refinement, SegmentationModel(2), 128, (1.0, 2.0),
                        supervised_vectors=vectors[:8], presence_embedding=embedding)
    saved_model = exporter.export_saved_model(model, embeddings, export_dir, serving_root=None)
    source = exporter.write_conversion_saved_model(model, os.path.join(export_dir, "source"))
    result = {"saved_model": saved_model,
              "tflite": convert.to_tflite(source, os.path.join(export_dir, "m.tflite")),
              "tflite_dynamic_range": convert.to_tflite(
                  source, os.path.join(export_dir, "m_dr.tflite"), quantize=True),
              "onnx": convert.to_onnx(source, os.path.join(export_dir, "m.onnx"))}
    return result, vectors


def measure(runners: dict[str, Any], vectors: np.ndarray, image: np.ndarray, ks: list[int],
            repeats: int, warmup: int) -> list[dict[str, Any]]:
    """Interleaved timings of one image (see the module docstring), one row per (runtime, K)."""
    inputs = {k: vectors[np.arange(k) % len(vectors)] for k in ks}  # [K, D]
    pairs = [(name, k) for k in ks for name in runners]
    for name, k in pairs:
        for _ in range(warmup):
            runners[name](image, inputs[k])
    times: dict[tuple[str, int], list[float]] = {pair: [] for pair in pairs}
    for r in range(repeats):
        shift = r % len(pairs)
        for name, k in pairs[shift:] + pairs[:shift]:
            start = time.perf_counter()
            runners[name](image, inputs[k])
            times[(name, k)].append(1000 * (time.perf_counter() - start))
    rows = []
    for k in ks:
        base = statistics.median(times[("saved_model", k)])
        for name in runners:
            values = sorted(times[(name, k)])
            rows.append({"runtime": name, "K": k, "median_ms": statistics.median(values),
                         "p90_ms": values[int(0.9 * (len(values) - 1))],
                         "ratio_to_saved_model": statistics.median(values) / base})
    return rows


def parity(runners: dict[str, Any], images: list[np.ndarray], vectors: np.ndarray
           ) -> dict[str, dict[str, float | None]]:
    """Each runtime against the SavedModel over `images`, all `vectors` per image.

    "iou_at_0.5": pooled IoU of the masks (None when both are empty everywhere, as for an
    under-trained model whose probabilities stay below 0.5); "iou_at_median": pooled IoU of
    mask_probs >= the SavedModel's median of that (image, concept), which splits every map
    in half, so that it says whether the runtime ranks the same pixels high.
    """
    stats = {name: {"max_abs_mask_probs": 0.0, "max_abs_presence": 0.0, "inter": 0, "union": 0,
                    "inter_median": 0, "union_median": 0} for name in runners}
    for image in images:
        reference = runners["saved_model"](image, vectors)
        median = np.median(reference["mask_probs"], axis=(1, 2), keepdims=True)  # [K, 1, 1]
        high = reference["mask_probs"] >= median
        for name, runner in runners.items():
            outputs = runner(image, vectors)
            entry = stats[name]
            entry["max_abs_mask_probs"] = max(entry["max_abs_mask_probs"], float(np.abs(
                outputs["mask_probs"] - reference["mask_probs"]).max()))
            entry["max_abs_presence"] = max(entry["max_abs_presence"], float(np.abs(
                outputs["presence"] - reference["presence"]).max()))
            masks, ref_masks = outputs["masks"] > 0, reference["masks"] > 0
            entry["inter"] += int((masks & ref_masks).sum())
            entry["union"] += int((masks | ref_masks).sum())
            mine = outputs["mask_probs"] >= median
            entry["inter_median"] += int((mine & high).sum())
            entry["union_median"] += int((mine | high).sum())
    return {name: {"max_abs_mask_probs": e["max_abs_mask_probs"],
                   "max_abs_presence": e["max_abs_presence"],
                   "iou_at_0.5": e["inter"] / e["union"] if e["union"] else None,
                   "iou_at_median": e["inter_median"] / e["union_median"]}
            for name, e in stats.items()}


def parity_images(pattern: str | None, count: int) -> list[np.ndarray]:
    """Up to `count` images matching a glob pattern (sorted), upright RGB."""
    import glob

    from conceptmask_tf.serving.segment import read_image

    paths = sorted(glob.glob(pattern))[:count] if pattern else []
    return [read_image(p) for p in paths]


def _size_mb(path: str) -> float:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
                   for f in files) / 2 ** 20
    return os.path.getsize(path) / 2 ** 20


def table(result: dict[str, Any]) -> str:
    """Markdown tables of the timings and the parity figures."""
    side = result["image_side"]
    lines = [(f"One {side}x{side} image, median of {result['repeats']} interleaved calls, "
              f"{result['threads']} thread(s) per runtime ({result['cpu_count']} CPU cores, "
              f"load average {result['load_average']:.1f} when timing began)"), "",
             "| Runtime | K | median ms | p90 ms | ratio to SavedModel | file MB |",
             "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['runtime']} | {row['K']} | {row['median_ms']:.1f} | "
                     f"{row['p90_ms']:.1f} | {row['ratio_to_saved_model']:.2f} | "
                     f"{result['file_mb'][row['runtime']]:.1f} |")
    lines += ["", (f"Parity with the SavedModel on {result['parity_images']} image(s), "
              f"K = {result['parity_k']}"), "",
              ("| Runtime | max abs diff mask_probs | max abs diff presence | mask IoU at 0.5 | "
              "IoU at the median |"), "|---|---|---|---|---|"]
    for name, entry in result["parity"].items():
        iou = entry["iou_at_0.5"]
        lines.append(f"| {name} | {entry['max_abs_mask_probs']:.1e} | "
                     f"{entry['max_abs_presence']:.1e} | "
                     f"{'n/a (no mask)' if iou is None else f'{iou:.4f}'} | "
                     f"{entry['iou_at_median']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models_dir", default="conceptmask_demo/models",
                        help="pipeline models folder; '' for an untrained model")
    parser.add_argument("--concepts_dir", default=None,
                        help="word vectors (default: <models_dir>/../concepts)")
    parser.add_argument("--export_dir", default=None,
                        help="where the exports go (default: a temporary folder, removed)")
    parser.add_argument("--image_side", type=int, default=256)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="CPU threads of every runtime (TensorFlow intra- and inter-op)")
    parser.add_argument("--parity_images",
                        default="conceptmask_demo/data/images/test_*",
                        help="glob of images for the parity figures (none found: the "
                             "timing image)")
    parser.add_argument("--parity_count", type=int, default=20)
    parser.add_argument("--parity_k", type=int, default=8,
                        help="concepts per parity image (the first vocabulary rows)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    models_dir = args.models_dir if args.models_dir and os.path.isdir(args.models_dir) else None
    if args.models_dir and models_dir is None:
        print(f"{args.models_dir} not found: benchmarking an untrained model", flush=True)
    export_dir = args.export_dir or tempfile.mkdtemp(prefix="export_latency-")
    try:
        start = time.perf_counter()
        paths, vectors = export_all(models_dir, args.concepts_dir, export_dir)
        print(f"exported and converted in {time.perf_counter() - start:.0f} s", flush=True)
        from conceptmask_tf.serving.runtimes import load_runner

        runners = {name: load_runner(path, num_threads=args.threads)
                   for name, path in paths.items()}
        image = np.random.default_rng(0).integers(0, 256, (args.image_side,) * 2 + (3,),
                                                  np.uint8)
        result = {"image_side": args.image_side, "repeats": args.repeats,
                  "warmup": args.warmup, "cpu_count": os.cpu_count(), "threads": args.threads,
                  "load_average": os.getloadavg()[0],
                  "files": paths, "file_mb": {n: _size_mb(p) for n, p in paths.items()},
                  "rows": measure(runners, vectors, image, args.ks, args.repeats,
                                  args.warmup)}
        images = parity_images(args.parity_images, args.parity_count) or [image]
        result["parity_images"] = len(images)
        result["parity_k"] = min(args.parity_k, len(vectors))
        result["parity"] = parity(runners, images, vectors[:result["parity_k"]])
    finally:
        if args.export_dir is None:
            shutil.rmtree(export_dir, ignore_errors=True)
    result["models_dir"] = models_dir or "untrained"
    print(table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
