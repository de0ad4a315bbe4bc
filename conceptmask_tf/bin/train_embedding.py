"""conceptmask-train-embedding: stage 1, the embedding network on image-level tags (§4.1).

Writes into --model_dir: embedding.keras, config.json, checkpoints/, logs/ (TensorBoard);
a rerun with the same --model_dir resumes an interrupted run (backup/).

Example:
    conceptmask-train-embedding --flagfile=flags/world_stage1.cfg --data_root=/tmp/world \
        --concepts_dir=/tmp/work/concepts --model_dir=/tmp/work/models/embedding
"""

from __future__ import annotations

from absl import app

from conceptmask_tf.training import cli
from conceptmask_tf.training.config import EmbeddingConfig

PROGRAM = "conceptmask-train-embedding"


def main(argv: list[str]) -> int:
    from conceptmask_tf.training import embedding  # imports TensorFlow

    return cli.run_training(EmbeddingConfig, embedding.train, PROGRAM, argv)


def run() -> None:
    cli.define_flags(EmbeddingConfig)
    app.run(main)


if __name__ == "__main__":
    run()
