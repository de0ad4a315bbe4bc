"""conceptmask-train-refinement: stage 2, attention refinement on boxes (§4.2).

Loss: box loss + c * matching loss (--matching_top_n, --matching_weight,
--matching_threshold) + spatial discrimination loss (off with --no_neg, the Refined-noNeg
ablation). Writes into --model_dir: refinement.keras, config.json, checkpoints/, logs/.

Example:
    conceptmask-train-refinement --flagfile=flags/world_stage2.cfg --data_root=/tmp/world \
        --concepts_dir=/tmp/work/concepts --embedding_model_dir=/tmp/work/models/embedding \
        --model_dir=/tmp/work/models/refinement
"""

from __future__ import annotations

from absl import app

from conceptmask_tf.training import cli
from conceptmask_tf.training.config import RefinementConfig

PROGRAM = "conceptmask-train-refinement"


def main(argv: list[str]) -> int:
    from conceptmask_tf.training import refinement  # imports TensorFlow

    return cli.run_training(RefinementConfig, refinement.train, PROGRAM, argv)


def run() -> None:
    cli.define_flags(RefinementConfig)
    app.run(main)


if __name__ == "__main__":
    run()
