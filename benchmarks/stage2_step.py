"""Stage-2 train step: the whole backbone fine-tuned against the lower part frozen and shared.

Builds the stage-2 trainer of a preset (`--flagfile`, e.g. flags/world_stage2.cfg) three
ways on the same stage-1 model: (1) every backbone layer fine-tuned (the paper's wording;
the frozen stage-1 copy for the matching targets runs its whole backbone), (2) the layers
below `--finetune_from` frozen but each network still running its own copy, (3) the
trainer as `--finetune_from` builds it: the frozen lower backbone runs once per step for
both networks. One batch of the preset's pipeline, repeated; after warm-up each
repetition times `--steps` train steps of each trainer in turn; prints the medians and
their ratios to (1). Measured on the world this way (BENCHMARKS.md, "Stage 2 fine-tunes
the backbone above conv4"):

    python benchmarks/stage2_step.py --data_root=W/data --concepts_dir=W/concepts \
        --embedding_model_dir=W/models/embedding [--flagfile=flags/world_stage2.cfg] \
        [--finetune_from=conv4] [--repeats=5] [--json=out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmarks._train_steps import median_step_ms, preset_config, step_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    step_arguments(parser, "world_stage2.cfg")
    parser.add_argument("--embedding_model_dir", required=True, help="a trained stage 1")
    parser.add_argument("--finetune_from", default="conv4")
    args = parser.parse_args(argv)

    from conceptmask_tf.concepts.concept_sets import load_training_concepts
    from conceptmask_tf.data.datasets import refinement_dataset
    from conceptmask_tf.data.skips import SkipCounter
    from conceptmask_tf.models import freeze_backbone_before
    from conceptmask_tf.training import fit, refinement
    from conceptmask_tf.training.config import RefinementConfig

    config = preset_config(RefinementConfig, args.flagfile, [
        f"--data_root={args.data_root}", f"--concepts_dir={args.concepts_dir}",
        f"--embedding_model_dir={args.embedding_model_dir}", "--finetune_from="])
    concepts = load_training_concepts(config.data_root, config.concepts_dir)
    skips = SkipCounter(config.data_root)
    boxed, index = refinement.box_targets(config, concepts, skips)

    def trainer(finetune_from: str, share: bool) -> Any:
        built = refinement.build_trainer(
            dataclasses.replace(config, finetune_from=finetune_from if share else ""),
            concepts)
        if finetune_from and not share:
            freeze_backbone_before(built.refinement.embedding.backbone, finetune_from)
        built.compile(optimizer=fit.make_optimizer(config), jit_compile=False)
        built.make_train_function()
        return built

    trainers = {"whole backbone fine-tuned": trainer("", False),
                f"frozen below {args.finetune_from}, two lower passes":
                    trainer(args.finetune_from, False),
                f"frozen below {args.finetune_from}, one shared lower pass":
                    trainer(args.finetune_from, True)}
    mask_size = refinement.attention_map_size(
        next(iter(trainers.values())).refinement.embedding, config.image_size)
    dataset = refinement_dataset(
        config.data_root, boxed, index, image_size=config.image_size, mask_size=mask_size,
        max_concepts=config.max_concepts, **fit.training_input_options(config, skips))
    batch = next(iter(dataset))
    medians = median_step_ms(
        {name: lambda built=built: built.train_function(iter([batch]))
         for name, built in trainers.items()}, args.repeats, args.steps)
    whole = medians["whole backbone fine-tuned"]
    result = {"batch_size": config.batch_size, "image_size": config.image_size,
              "load_average": os.getloadavg()[0],
              "ms_per_step": medians,
              "speed_up": {name: whole / value for name, value in medians.items()}}
    print(f"stage-2 train step, batch {config.batch_size} at {config.image_size} px "
          f"(median of {args.repeats} x {args.steps} steps, load {result['load_average']:.2f})")
    for name, value in medians.items():
        print(f"| {name} | {value:.1f} ms | {whole / value:.2f}x |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
