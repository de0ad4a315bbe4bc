"""conceptmask-train-segmentation: stage 3, the label-agnostic segmentation network (§4.3).

Attention maps come on the fly from the frozen stage-2 network at each of
--attention_scales (one with --single_att, the Ours-singleAtt ablation). Writes into
--model_dir: segmentation.keras, config.json, checkpoints/, logs/.

Example:
    conceptmask-train-segmentation --flagfile=flags/world_stage3.cfg --data_root=/tmp/world \
        --concepts_dir=/tmp/work/concepts --refinement_model_dir=/tmp/work/models/refinement \
        --model_dir=/tmp/work/models/segmentation
"""

from __future__ import annotations

from absl import app

from conceptmask_tf.training import cli
from conceptmask_tf.training.config import SegmentationConfig

PROGRAM = "conceptmask-train-segmentation"


def main(argv: list[str]) -> int:
    from conceptmask_tf.training import segmentation  # imports TensorFlow

    return cli.run_training(SegmentationConfig, segmentation.train, PROGRAM, argv)


def run() -> None:
    cli.define_flags(SegmentationConfig)
    app.run(main)


if __name__ == "__main__":
    run()
