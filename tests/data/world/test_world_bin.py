"""The conceptmask-world binary and its flagfiles."""

import json
import os
import pathlib
import subprocess
import sys

from absl import flags

from conceptmask_tf.bin import world as world_bin
from conceptmask_tf.data.world import WorldConfig, build_ontology

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _config_from(flagfile):
    fv = flags.FlagValues()  # a private registry: the global one stays untouched
    world_bin.define_flags(fv)
    fv(["world", f"--flagfile={ROOT / 'flags' / flagfile}", "--out_dir=/nonexistent"])
    return world_bin.config_from_flags(fv)


def test_default_flagfile_is_the_library_default():
    assert _config_from("world_default.cfg") == WorldConfig()


def test_alt_flagfile_is_another_world():
    alt = _config_from("world_alt.cfg")
    default = WorldConfig()
    assert alt.seed != default.seed and alt.image_size != default.image_size
    assert build_ontology(alt.seed, alt.num_phrases).splits() != build_ontology(
        default.seed, default.num_phrases).splits()


def _tree(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_binary_is_deterministic_across_processes_and_refuses_to_overwrite(tmp_path):
    def world(out, hash_seed):
        cmd = [sys.executable, "-m", "conceptmask_tf.bin.world", f"--out_dir={out}",
               "--num_images=6", "--image_size=48", "--num_eval_images=4",
               "--min_eval_positives=1", "--num_phrases=3", "--noprogress"]
        env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}  # set order must not matter
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=120, check=False)

    first, second = world(tmp_path / "a", 1), world(tmp_path / "b", 2)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "concept world written to" in first.stdout
    assert set(json.loads((tmp_path / "a" / "splits.json").read_text())) == {
        "strong", "weak_box", "weak_image", "zero_shot"}
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    again = world(tmp_path / "a", 1)
    assert again.returncode == 1 and "not empty" in again.stderr
