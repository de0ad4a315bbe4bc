"""Lever experiment: the weak concepts' own map alpha_q taken from stage 1, not stage 2.

Runs `conceptmask-evaluate` (same flags; the full model is assembled and theta calibrated
here, never loaded from a saved <work_dir>/concept_mask) with the full model
composed as `ConceptMask(..., weak_attention="original")` (departure 21 in docs/method.md) whatever
the segmentation config says; the no_neg and single_att models keep the config's rule, so
only the full model's rows compare. For choosing, so run it with --split=val:

    python benchmarks/weak_attention_from_stage1.py --model_dir=W/models \
        --data_root=W/data --out_dir=R --split=val --pictures_per_group=0

(BENCHMARKS.md, "Stage 1 localisation": +0.010 weak_image IoU on validation at the demo
preset; "The `world_quality` budget": +0.042 and +0.044 on the two worlds, adopted there
as `--weak_attention=original`.)
"""
import dataclasses
import os
import sys
import tempfile

from absl import app

from conceptmask_tf.assembly import stage_networks
from conceptmask_tf.bin import evaluate

_CONCEPT_MASK = stage_networks.StageNetworks.concept_mask


def _full_model_from_stage1(self, refinement="refinement", segmentation="segmentation",
                            supervised_vectors=None, weak_theta=0.5):
    """The full model (the one with the weak-concept rule) with alpha_q from stage 1."""
    if (refinement, segmentation) == ("refinement", "segmentation") \
            and supervised_vectors is not None:
        self = dataclasses.replace(self, weak_attention="original")
    return _CONCEPT_MASK(self, refinement, segmentation, supervised_vectors, weak_theta)


stage_networks.StageNetworks.concept_mask = _full_model_from_stage1

if __name__ == "__main__":
    evaluate.define_flags()
    with tempfile.TemporaryDirectory() as empty:  # no saved model there: assemble
        app.run(evaluate.main, argv=[*sys.argv, f"--concept_mask={os.path.join(empty, 'none')}"])
