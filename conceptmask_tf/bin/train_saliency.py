"""conceptmask-train-saliency: the saliency baseline, a concept-blind foreground network.

The stage-3 encoder-decoder without attention input, trained on the stage-3 training
images (coco/instances_train.json) to predict the union of their mask concepts' masks;
the evaluation's `saliency` row (the paper's Saliency-DSS comparison). Writes into
--model_dir: saliency.keras, config.json, checkpoints/, logs/.

Example:
    conceptmask-train-saliency --flagfile=flags/world_saliency.cfg --data_root=/tmp/world \
        --concepts_dir=/tmp/work/concepts --model_dir=/tmp/work/models/saliency
"""

from __future__ import annotations

from absl import app

from conceptmask_tf.training import cli
from conceptmask_tf.training.config import SaliencyConfig

PROGRAM = "conceptmask-train-saliency"


def main(argv: list[str]) -> int:
    from conceptmask_tf.training import saliency  # imports TensorFlow

    return cli.run_training(SaliencyConfig, saliency.train, PROGRAM, argv)


def run() -> None:
    cli.define_flags(SaliencyConfig)
    app.run(main)


if __name__ == "__main__":
    run()
