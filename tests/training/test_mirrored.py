"""MirroredStrategy over two logical CPU devices trains like one device (loss scaling)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mirrored_training_matches_single_device_losses(world, stage1, stage2):
    child = subprocess.run(
        [sys.executable, "-m", "tests.training.mirrored_run",
         json.dumps(dataclasses.asdict(world))],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    assert child.returncode == 0, child.stderr[-4000:]
    results = json.loads(child.stdout.strip().splitlines()[-1])
    for stage in ("embedding", "refinement", "segmentation"):
        run = results[stage]
        assert (run["strategy"], run["replicas"]) == ("MirroredStrategy", 2), stage
        assert run["jit_compile"] is False  # requested, but XLA fails over > 1 replica
        assert run["replica_drift"] == 0.0  # BatchNorm statistics averaged over replicas
        assert run["single"].keys() == run["mirrored"].keys()
        # Training mode, same data and seed: only BatchNorm statistics differ (each replica
        # normalises half the batch). A loss not divided by the replicas would be off by 2x.
        for key, single in run["single"].items():
            np.testing.assert_allclose(run["mirrored"][key], single, rtol=0.1,
                                       err_msg=f"{stage} {key}")
        # Inference mode, nothing differs: the distributed evaluation of one batch (two
        # halves, each scaled per replica) equals the eager one-device computation.
        for key, direct in run["direct"].items():
            np.testing.assert_allclose(run["distributed"][key], direct, rtol=1e-3,
                                       err_msg=f"{stage} {key}")
