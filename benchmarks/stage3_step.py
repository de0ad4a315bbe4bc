"""Stage-3 train step: attention from the frozen stage 2 on the fly against cached maps.

Builds the stage-3 trainer of a preset (`--flagfile`, e.g. flags/world_stage3.cfg) on a
trained stage 2 and times, on one batch of the preset's pipeline, (1) the train step as
it runs without `--cache_attention` (both stage-2 passes inside the step), (2) the step
given the batch's maps precomputed, as with `--cache_attention`, and (3) the one-off cost
the cache adds: the attention passes over every training example once. Prints medians,
the step ratio (1) / (2) and the epochs after which the cache has paid for itself.
Measured on the world this way (BENCHMARKS.md, "Stage 3 on cached attention"):

    python benchmarks/stage3_step.py --data_root=W/data --concepts_dir=W/concepts \
        --refinement_model_dir=W/models/refinement [--flagfile=flags/world_stage3.cfg] \
        [--single_att] [--repeats=5] [--json=out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmarks._train_steps import median_step_ms, preset_config, step_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    step_arguments(parser, "world_stage3.cfg")
    parser.add_argument("--refinement_model_dir", required=True, help="a trained stage 2")
    parser.add_argument("--single_att", action="store_true",
                        help="the single_att ablation's trainer (one attention scale)")
    args = parser.parse_args(argv)

    from conceptmask_tf.concepts.concept_sets import load_training_concepts
    from conceptmask_tf.data.datasets import segmentation_dataset
    from conceptmask_tf.data.skips import SkipCounter
    from conceptmask_tf.training import fit, segmentation
    from conceptmask_tf.training.config import SegmentationConfig

    config = preset_config(SegmentationConfig, args.flagfile, [
        f"--data_root={args.data_root}", f"--concepts_dir={args.concepts_dir}",
        f"--refinement_model_dir={args.refinement_model_dir}",
        f"--{'' if args.single_att else 'no'}single_att"])
    concepts = load_training_concepts(config.data_root, config.concepts_dir)
    skips = SkipCounter(config.data_root)
    masked, index = segmentation.mask_targets(config, concepts, skips)
    trainer = segmentation.build_trainer(config, concepts)
    trainer.compile(optimizer=fit.make_optimizer(config), jit_compile=False)
    trainer.make_train_function()

    eval_data = segmentation_dataset(config.data_root, masked, index,
                                     image_size=config.image_size,
                                     batch_size=config.batch_size, training=False,
                                     skips=SkipCounter())
    segmentation.attention_cache(trainer, eval_data.take(2))  # trace
    start = time.perf_counter()
    cached = segmentation.attention_cache(trainer, eval_data)
    cache_s = time.perf_counter() - start
    dataset = segmentation_dataset(config.data_root, masked, index,
                                   image_size=config.image_size, attention=cached,
                                   **fit.training_input_options(config, skips))
    if config.guided_attention_rate > 0:
        dataset = dataset.map(lambda x, y: ({**x, "guide_mask": y["mask"]}, y))
    with_maps = next(iter(dataset))
    on_the_fly = ({k: v for k, v in with_maps[0].items() if not k.startswith("attention_")},
                  with_maps[1])
    batches = {"attention on the fly": on_the_fly, "cached attention": with_maps}
    medians = median_step_ms(
        {name: lambda batch=batch: trainer.train_function(iter([batch]))
         for name, batch in batches.items()}, args.repeats, args.steps)
    fly, cache = medians["attention on the fly"], medians["cached attention"]
    steps_per_epoch = len(cached[0]) // config.batch_size
    saved_per_epoch_s = (fly - cache) / 1000 * steps_per_epoch
    result = {"batch_size": config.batch_size, "image_size": config.image_size,
              "attention_sizes": [m.shape[1:] for m in cached],
              "examples": len(cached[0]), "load_average": os.getloadavg()[0],
              "ms_per_step": medians, "step_ratio": fly / cache, "cache_s": cache_s,
              "epochs_to_repay": cache_s / saved_per_epoch_s if saved_per_epoch_s > 0 else None}
    print(f"stage-3 train step{' (single_att)' if args.single_att else ''}, batch {config.batch_size} at {config.image_size} px "
          f"(median of {args.repeats} x {args.steps} steps, load {result['load_average']:.2f})")
    for name, value in medians.items():
        print(f"| {name} | {value:.1f} ms | {fly / value:.2f}x |")
    print(f"cache of {len(cached[0])} examples: {cache_s:.1f} s, repaid after "
          f"{result['epochs_to_repay']:.2f} epochs of {steps_per_epoch} steps"
          if result["epochs_to_repay"] else f"cache of {len(cached[0])} examples: "
          f"{cache_s:.1f} s, never repaid")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, default=list)
    return result


if __name__ == "__main__":
    main()
