"""Per-stage training throughput with and without XLA and mixed precision, and the input pipeline.

For each stage (1 embedding, 2 refinement, 3 segmentation) of a preset (`--preset paper`:
flags/paper_stage{1,2,3}.cfg, ResNet-50 at 300 px, batch 256 / 64 / 32; `--preset world`:
flags/world_stage{1,2,3}.cfg) and each variant (fp32, xla, mixed, xla_mixed), the trainer
is built as `Stage.train` builds it (`fit.training_runtime` with the variant's
`jit_compile` and `mixed_precision`: mixed_float16 on a GPU, mixed_bfloat16 on a CPU; the
stage's `read_examples` or, with `--shards_dir`, `read_shards`; `build`; compile with
`fit.make_optimizer`; the stage's `dataset` hook given `fit.training_input_options`), and
three rates are measured in images (training examples) per second:

    compute   `fit` on one batch of the pipeline, cached and repeated: the device alone;
    fit       `fit` on the training pipeline, as training runs;
    pipeline  the pipeline alone, iterated for as many batches.

Each rate is taken over `--steps` batches after `--warmup` ones (tracing, XLA compilation
and the pipeline's start fall in the warm-up; each step ends with the host reading the
loss, as in the project's training, whose callbacks read the logs every batch).
`input_bound` = fit / compute: 1.0 = the pipeline keeps the accelerator busy, 0.5 = the
accelerator waits half the time. Weights are random (no download: `backbone_weights` is
None; the figures are speed only). Stages 2 and 3 need the upstream model dirs: without
`--embedding_model_dir` / `--refinement_model_dir`, random stage-1 / stage-2 networks of
the preset are built and saved as training saves them (float32) in a temporary folder.
The preset's distribution strategy is replaced by the default one (one device). One JSON
line per measurement, a table at the end; `--json` is rewritten after each measurement,
so a run cut short keeps what it measured (`--max_minutes` skips what would start late;
the stages run in turn for each variant, so that every stage has its first variant first).

A variant that cannot run is reported with its error and the next one runs. (The CPU
check found two: stage 3 under mixed precision, a float32 / bfloat16 mismatch, and with the
world preset's guided attention under XLA, no XLA kernel for ResizeArea; both are fixed and
tested in tests/training/test_runtime.py.)

On a machine with one NVIDIA GPU, in one go (not run on a GPU yet; the script was checked
on a CPU only, at 32 and 64 px):

    conceptmask-world --flagfile=flags/world_default.cfg --num_images=600 \
        --num_eval_images=100 --out_dir=/tmp/w --noprogress
    conceptmask-concepts --data_root=/tmp/w --dim=512 --out_dir=/tmp/c --noprogress
    python benchmarks/gpu_training.py --data_root=/tmp/w --concepts_dir=/tmp/c \
        --max_minutes=7 --json=/tmp/gpu.json

(600 images are enough for the paper's batches, since the pipelines repeat, and take ~10 s
to make; `--dim` is clamped to the world's vocabulary, about 75.) The preset's batches are
global batches for 8 GPUs (256 / 64 / 32), here on one. The world's images are 128 px
JPEGs, small to decode and upsampled to the paper's 300 px, so the pipeline and fit rates
are optimistic against real (larger) images; shards (`conceptmask-shards <stage>
--output_dir=S/<stage>`, then `--shards_dir=S`) read the same images from TFRecords.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import re
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

VARIANTS = {"fp32": (False, False), "xla": (True, False), "mixed": (False, True),
            "xla_mixed": (True, True)}  # name -> (jit_compile, mixed_precision)
STAGE_NAMES = {1: "embedding", 2: "refinement", 3: "segmentation"}
UPSTREAM_FLAGS = {2: "embedding_model_dir", 3: "refinement_model_dir"}


def device_facts() -> dict[str, Any]:
    """The accelerator (the first GPU, else "CPU"), the CPU count and the versions."""
    import keras
    import tensorflow as tf

    facts: dict[str, Any] = {"device": "CPU", "cpus": os.cpu_count(),
                             "tensorflow": tf.__version__, "keras": keras.__version__}
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        facts["device"] = details.get("device_name", gpus[0].name)
        facts["compute_capability"] = details.get("compute_capability")
        facts["gpus"] = len(gpus)
    return facts


def stage_config(stage: int, args: argparse.Namespace, upstream: dict[int, str],
                 jit_compile: bool = False, mixed_precision: bool = False) -> Any:
    """The preset's config of `stage` with the run's paths, sizes and variant."""
    from benchmarks._train_steps import preset_config
    from conceptmask_tf.training.config import CONFIG_CLASSES

    name = STAGE_NAMES[stage]
    flags = [f"--data_root={args.data_root}", f"--concepts_dir={args.concepts_dir}",
             "--distribution_strategy=none", f"--{'' if jit_compile else 'no'}jit_compile",
             f"--{'' if mixed_precision else 'no'}mixed_precision"]
    flags += [f"--{k}={getattr(args, k)}" for k in ("batch_size", "image_size")
              if getattr(args, k)]
    if stage in UPSTREAM_FLAGS:
        flags.append(f"--{UPSTREAM_FLAGS[stage]}={upstream[stage]}")
    if args.shards_dir:  # the attention cache is refused with shards
        flags += [f"--shards={os.path.join(args.shards_dir, name)}"] + (
            ["--nocache_attention"] if stage == 3 else [])
    flagfile = os.path.join(REPO, "flags", f"{args.preset}_stage{stage}.cfg")
    config = preset_config(CONFIG_CLASSES[name], flagfile, flags)
    config = dataclasses.replace(config, steps=args.warmup + args.steps)
    return dataclasses.replace(config, backbone_weights=None) if stage == 1 else config


def random_upstream(stages: list[int], args: argparse.Namespace, directory: str
                    ) -> dict[int, str]:
    """Model dirs of the upstream stages the measured stages read: the given ones, else
    random networks of the preset saved as training saves them (`<dir>/<stage>.keras`).

    Returns:
        Downstream stage -> its upstream model dir.
    """
    import keras

    from conceptmask_tf.concepts.concept_sets import load_training_concepts
    from conceptmask_tf.models import stage_files
    from conceptmask_tf.training.embedding import EmbeddingStage
    from conceptmask_tf.training.refinement import RefinementStage

    given = {2: args.embedding_model_dir, 3: args.refinement_model_dir}
    needed = {s for s in stages if s in UPSTREAM_FLAGS and not given[s]}
    if 3 in needed and not given[2]:
        needed.add(2)
    upstream = {s: given[s] or os.path.join(directory, STAGE_NAMES[s - 1]) for s in (2, 3)}
    concepts = load_training_concepts(args.data_root, args.concepts_dir) if needed else None
    for stage in sorted(needed):  # stage 2's upstream (stage 1) first
        built = (EmbeddingStage() if stage == 2 else RefinementStage()).build(
            stage_config(stage - 1, args, upstream), concepts, None)
        os.makedirs(upstream[stage], exist_ok=True)
        built.stage_model.save(stage_files.model_path(upstream[stage], STAGE_NAMES[stage - 1]))
        print(f"random stage-{stage - 1} network saved in {upstream[stage]}", flush=True)
        del built
        keras.backend.clear_session()
    return upstream


def timed_fit(trainer: Any, dataset: Any, warmup: int, steps: int) -> dict[str, float]:
    """Fits `warmup + steps` steps; times the last `steps` from batch end to batch end.

    Returns:
        {"seconds": of the timed steps, "first_step_s": from the call to the end of the
        first step (tracing, XLA compilation, the pipeline's start), "loss": the last}.
    """
    import keras

    marks: dict[int, float] = {}
    last: dict[str, float] = {}

    class Marks(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            marks[batch] = time.perf_counter()  # logs are host floats by now: step done
            last["loss"] = float((logs or {}).get("loss", float("nan")))

    start = time.perf_counter()
    trainer.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[Marks()],
                shuffle=False, verbose=0)
    return {"seconds": marks[warmup + steps - 1] - marks[warmup - 1],
            "first_step_s": marks[0] - start, "loss": last["loss"]}


def pipeline_seconds(dataset: Any, warmup: int, steps: int) -> float:
    """Seconds the pipeline takes for `steps` batches after `warmup` ones."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return time.perf_counter() - start


def measure(stage: int, variant: str, args: argparse.Namespace,
            upstream: dict[int, str]) -> dict[str, Any]:
    """The three rates of one stage and variant (see the module docstring)."""
    import collections

    import tensorflow as tf

    from conceptmask_tf.data.skips import SkipCounter
    from conceptmask_tf.training import fit
    from conceptmask_tf.training.embedding import EmbeddingStage
    from conceptmask_tf.training.refinement import RefinementStage
    from conceptmask_tf.training.segmentation import SegmentationStage

    jit_compile, mixed = VARIANTS[variant]
    config = stage_config(stage, args, upstream, jit_compile, mixed)
    hooks = {1: EmbeddingStage, 2: RefinementStage, 3: SegmentationStage}[stage]()
    gpu = bool(tf.config.list_logical_devices("GPU"))
    if gpu:
        try:
            tf.config.experimental.reset_memory_stats("GPU:0")
        except (ValueError, tf.errors.OpError):
            gpu = False  # no memory statistics on this device
    with fit.training_runtime(config) as runtime:  # as Stage.train, up to fit_stage
        concepts = hooks.load_concepts(config)
        skips = SkipCounter(config.data_root)
        read = hooks.read_shards if config.shards else hooks.read_examples
        examples, num_examples = read(config, concepts, skips)
        config = fit.resolved_config(config, num_examples, runtime)
        with runtime.strategy.scope():
            built = hooks.build(config, concepts, examples)
            built.trainer.compile(optimizer=fit.make_optimizer(config), loss=built.loss,
                                  loss_weights=built.loss_weights,
                                  jit_compile=runtime.jit_compile)
        dataset = hooks.dataset(config, examples, built, fit.training_input_options(
            config, skips, runtime.strategy))
        compute_dtypes = collections.Counter(
            layer.compute_dtype for layer in built.trainer._flatten_layers(include_self=False)
            if layer.weights)
        compute = timed_fit(built.trainer, dataset.take(1).cache().repeat(), args.warmup,
                            args.steps)
        with_input = timed_fit(built.trainer, dataset, args.warmup, args.steps)
        pipeline_s = pipeline_seconds(dataset, args.warmup, args.steps)
    images = config.batch_size * args.steps
    rates = {"compute_images_per_s": images / compute["seconds"],
             "fit_images_per_s": images / with_input["seconds"],
             "pipeline_images_per_s": images / pipeline_s}
    result = {"stage": stage, "name": STAGE_NAMES[stage], "variant": variant,
              "jit_compile": runtime.jit_compile, "dtype_policy": runtime.policy,
              "batch_size": config.batch_size, "image_size": config.image_size,
              "examples": num_examples, "shards": bool(config.shards), **rates,
              "input_bound": rates["fit_images_per_s"] / rates["compute_images_per_s"],
              "first_step_s": compute["first_step_s"], "loss": with_input["loss"],
              "layer_compute_dtypes": dict(compute_dtypes)}
    if stage == 3:
        result["attention_sizes"] = [round(s * config.image_size) for s in config.scales]
        result["cache_attention"] = config.cache_attention
    if gpu:
        result["peak_gpu_memory_gib"] = (
            tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**30)
    return result


def error_summary(error: Exception) -> str:
    """The informative line of an error (TensorFlow's and Keras's first lines are generic)."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines()]
    generic = ("File ", "Detected at node", "[[", "Arguments received", "\u2022",
               "Exception encountered", "Graph execution error", "Run with")
    lines = [line for line in lines if line and not line.startswith(generic)] or [""]
    telling = [line for line in lines
               if re.search(r"unsupported|OOM|memory|does not match|dtype", line)]
    return f"{type(error).__name__}: {(telling or lines)[0][:300]}"


def print_table(results: list[dict[str, Any]]) -> None:
    """The summary: one row per stage and variant, images/s."""
    print("\n| stage | variant | batch | px | compute | fit | pipeline | input_bound "
          "| first step s | note |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r or "skipped" in r:
            print(f"| {r['stage']} | {r['variant']} | | | | | | | | "
                  f"{r.get('error') or r.get('skipped')} |")
            continue
        print(f"| {r['stage']} {r['name']} | {r['variant']} ({r['dtype_policy']}) "
              f"| {r['batch_size']} | {r['image_size']} | {r['compute_images_per_s']:.1f} "
              f"| {r['fit_images_per_s']:.1f} | {r['pipeline_images_per_s']:.1f} "
              f"| {r['input_bound']:.2f} | {r['first_step_s']:.1f} | loss {r['loss']:.3g} |")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--concepts_dir", required=True)
    parser.add_argument("--preset", default="paper", choices=("paper", "world"))
    parser.add_argument("--stages", default="1,2,3")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per rate")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (>= 1)")
    parser.add_argument("--batch_size", type=int, default=None, help="instead of the preset's")
    parser.add_argument("--image_size", type=int, default=None, help="instead of the preset's")
    parser.add_argument("--shards_dir", default=None,
                        help="folder of <stage>/ shard folders (conceptmask-shards)")
    parser.add_argument("--embedding_model_dir", default=None, help="default: random")
    parser.add_argument("--refinement_model_dir", default=None, help="default: random")
    parser.add_argument("--max_minutes", type=float, default=None,
                        help="skip the measurements that would start after this")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    stages = [int(s) for s in args.stages.split(",")]
    variants = args.variants.split(",")
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    if not set(stages) <= set(STAGE_NAMES) or not set(variants) <= set(VARIANTS):
        parser.error(f"stages are 1, 2, 3; variants {', '.join(VARIANTS)}")
    start = time.perf_counter()

    import keras

    run = {"preset": args.preset, "steps": args.steps, "warmup": args.warmup,
           **device_facts(), "load_average": os.getloadavg()[0], "results": []}
    print(json.dumps({k: v for k, v in run.items() if k != "results"}), flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_training_") as directory:
        upstream = random_upstream(stages, args, directory)
        for variant in variants:  # each stage's first variant first, should time run out
            for stage in stages:
                key = {"stage": stage, "variant": variant}
                if args.max_minutes and time.perf_counter() - start > 60 * args.max_minutes:
                    result = {**key, "skipped": f"past --max_minutes={args.max_minutes}"}
                else:
                    try:
                        result = measure(stage, variant, args, upstream)
                    except Exception as e:  # noqa: BLE001  (reported, the next one runs)
                        result = {**key, "error": error_summary(e)}
                    finally:
                        gc.collect()
                        keras.backend.clear_session()
                        keras.config.set_dtype_policy("float32")
                print(json.dumps(result), flush=True)
                run["results"].append(result)
                if args.json:
                    with open(args.json, "w", encoding="utf-8") as f:
                        json.dump(run, f, indent=1)
    run["total_s"] = time.perf_counter() - start
    print(f"\n{run['device']}, TF {run['tensorflow']}, keras {run['keras']}, preset "
          f"{args.preset}, images/s over {args.steps} steps after {args.warmup}; "
          f"{run['total_s']:.0f} s in all")
    print_table(sorted(run["results"], key=lambda r: (r["stage"], variants.index(r["variant"]))))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(run, f, indent=1)
    return run


if __name__ == "__main__":
    main()
