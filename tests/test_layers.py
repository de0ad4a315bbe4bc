"""The import contract of setup.cfg ([importlinter]): layers point one way."""

from __future__ import annotations

import configparser
import os
import pkgutil
import subprocess
import sys

import conceptmask_tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _layers() -> list[set[str]]:
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    text = config["importlinter:contract:layers"]["layers"]
    return [{name.strip() for name in line.split("|")} for line in text.split("\n")
            if line.strip()]


def test_the_import_contract_is_kept():
    # What the `lint-imports setup.cfg` command runs.
    script = ("import sys; from importlinter.cli import lint_imports; "
              "sys.exit(lint_imports(config_filename='setup.cfg', no_cache=True))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_every_package_and_module_of_the_package_is_in_a_layer():
    layered = set().union(*_layers())
    top_level = {f"conceptmask_tf.{info.name}"
                 for info in pkgutil.iter_modules(conceptmask_tf.__path__)}
    assert top_level == layered, "add new top-level modules to setup.cfg's layers"


def test_evaluation_and_serving_sit_above_assembly_and_beside_training():
    layers = _layers()
    level = {name: i for i, layer in enumerate(layers) for name in layer}
    assert level["conceptmask_tf.evaluation"] == level["conceptmask_tf.serving"] == level[
        "conceptmask_tf.training"]  # independent: neither imports training
    assert level["conceptmask_tf.assembly"] > level["conceptmask_tf.serving"]
    assert level["conceptmask_tf.concepts"] < level["conceptmask_tf.data"] < level[
        "conceptmask_tf.models"] == level["conceptmask_tf.losses"]
