"""The training binaries: flagfile -> config -> train, and their error reporting."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from absl import app, flags

from conceptmask_tf.training import cli, embedding
from conceptmask_tf.training.config import EmbeddingConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ["--image_size=32", "--batch_size=8", "--epochs=1", "--steps=2", "--hidden_dims=16,16",
        "--summary_images=1", "--keep_checkpoints=0"]


@pytest.mark.slow
def test_embedding_binary_trains_from_the_world_flagfile(world, tmp_path):
    model_dir = tmp_path / "embedding"
    child = subprocess.run(
        [sys.executable, "-m", "conceptmask_tf.bin.train_embedding",
         f"--flagfile={ROOT / 'flags' / 'world_stage1.cfg'}", f"--data_root={world.root}",
         f"--concepts_dir={world.concepts_dir}", f"--model_dir={model_dir}", *TINY],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert child.returncode == 0, child.stderr[-3000:]
    assert f"wrote {model_dir / 'embedding.keras'}" in child.stdout
    config = json.loads((model_dir / "config.json").read_text())["config"]
    # Command-line values override the flagfile, the rest comes from it.
    assert (config["image_size"], config["hidden_dims"], config["steps"]) == (32, [16, 16], 2)
    assert (config["scale_jitter"], config["learning_rate"]) == (0.15, 0.002)
    assert os.listdir(model_dir / "logs" / "images")


def _run(args: list[str]) -> int:
    fv = flags.FlagValues()
    cli.define_flags(EmbeddingConfig, fv)
    argv = fv(["conceptmask-train-embedding", *args])
    return cli.run_training(EmbeddingConfig, embedding.train, "conceptmask-train-embedding",
                            argv, fv)


def test_unsupported_strategy_and_missing_files_are_reported_not_raised(world, tmp_path, capsys):
    paths = [f"--data_root={world.root}", f"--concepts_dir={world.concepts_dir}",
             f"--model_dir={tmp_path / 'm'}"]
    assert _run([*paths, *TINY, "--distribution_strategy=multi_worker"]) == 1
    assert "needs the TF_CONFIG environment variable" in capsys.readouterr().err
    assert _run([*paths[1:], f"--data_root={tmp_path}", *TINY]) == 1
    assert "needs tags.jsonl" in capsys.readouterr().err
    with pytest.raises(app.UsageError, match="unexpected arguments"):
        fv = flags.FlagValues()
        cli.define_flags(EmbeddingConfig, fv)
        fv(["prog", *paths])
        cli.run_training(EmbeddingConfig, embedding.train, "prog", ["prog", "extra"], fv)


def test_required_flags_are_enforced():
    fv = flags.FlagValues()
    cli.define_flags(EmbeddingConfig, fv)
    with pytest.raises(flags.IllegalFlagValueError, match="model_dir"):
        fv(["prog", "--data_root=/d", "--concepts_dir=/c"])
