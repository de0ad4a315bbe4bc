"""The trained networks of a work dir's models folder, and the one rule composing them.

Layout (DESIGN.md §4): `<models>/embedding`, `<models>/refinement`, `<models>/segmentation`
(required), the ablations `<models>/refinement_no_neg`, `<models>/segmentation_single_att`
and the baseline `<models>/saliency` (optional: a missing one makes its report entries
null). Each is a stage model dir (`models.stage_files`), with its `config.json` when the
training binaries wrote it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from conceptmask_tf.base import files
from conceptmask_tf.concepts.concept_sets import held_out_concepts
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.splits import read_splits
from conceptmask_tf.models import ConceptMask, stage_files, to_fully_convolutional
from conceptmask_tf.models.stage_files import CONFIG_FILE, read_stage_config

logger = logging.getLogger(__name__)

REQUIRED_DIRS = {"embedding": "embedding", "refinement": "refinement",
                 "segmentation": "segmentation"}  # dir name -> stage
OPTIONAL_DIRS = {"refinement_no_neg": "refinement", "segmentation_single_att": "segmentation",
                 "saliency": "saliency"}
# Which report entries each optional dir feeds.
FEEDS = {"refinement_no_neg": ("attention.refined_noneg", "segmentation.no_neg"),
         "segmentation_single_att": ("segmentation.single_att",),
         "saliency": ("segmentation.saliency",)}
SUPERVISED_LEVELS = ("strong", "weak_box")


@dataclasses.dataclass
class StageNetworks:
    """The loaded networks and the settings to compose them.

    Attributes:
        models_dir: The models folder.
        networks: dir name -> loaded stage network (optional ones only when present).
        model_dirs: dir name -> its path, or None when missing.
        missing: Optional dir names that are missing.
        image_size: S of `ConceptMask` (the segmentation network's input side).
        scales: Attention scales of the full model.
        single_att_scales: Attention scales of the single-attention model.
        saliency_image_size: The side the saliency network was trained at (its
            config.json); None: `image_size`.
        weak_attention: Own map of the concepts outside the supervised set, "refined"
            or "original" (`ConceptMask`; the segmentation network's config.json).
    """

    models_dir: str
    networks: dict[str, Any]
    model_dirs: dict[str, str | None]
    missing: list[str]
    image_size: int
    scales: tuple[float, ...]
    single_att_scales: tuple[float, ...]
    saliency_image_size: int | None = None
    weak_attention: str = "refined"

    def has(self, name: str) -> bool:
        return name in self.networks

    def attention_sides(self, scales: Sequence[float]) -> list[int]:
        """Side of the attention map of each scale: ceil(round(s * S) / stride) ("same"
        convs of the refinement network)."""
        stride = self.networks["refinement"].output_stride
        return [-(-round(s * self.image_size) // stride) for s in scales]

    def fully_convolutional_embedding(self) -> Any:
        """The stage-1 network in fully-convolutional form (Table 1 "original")."""
        return to_fully_convolutional(self.networks["embedding"])

    def concept_mask(self, refinement: str = "refinement", segmentation: str = "segmentation",
                     supervised_vectors: np.ndarray | None = None,
                     weak_theta: float = 0.5) -> ConceptMask:
        """A `ConceptMask` of the named networks: the one composition rule.

        Scales are chosen by the segmentation network's config, presence is scored by the
        stage-1 network, and the weak concepts' own map is the segmentation config's
        `weak_attention`.
        """
        scales = self.single_att_scales if segmentation == "segmentation_single_att" \
            else self.scales
        if supervised_vectors is not None and len(supervised_vectors) == 0:
            supervised_vectors = None
        return ConceptMask(self.networks[refinement], self.networks[segmentation],
                           self.image_size, scales, supervised_vectors=supervised_vectors,
                           weak_theta=weak_theta,
                           presence_embedding=self.networks["embedding"],
                           weak_attention=self.weak_attention,
                           name=f"concept_mask_{refinement}_{segmentation}")


def load_stage_networks(models_dir: str, image_size: int | None = None) -> StageNetworks:
    """Loads the networks of a models folder.

    Args:
        models_dir: Folder holding the stage model dirs (DESIGN.md §4).
        image_size: S; None reads "image_size" from the segmentation (else refinement)
            model's config.json.

    Returns:
        The networks, with the optional ones that exist.

    Raises:
        FileNotFoundError: A required model dir (or its network file) is missing; the
            message names the path and the binary that writes it.
        ValueError: No image size can be found, or attention scales that do not fit the
            segmentation network.
    """
    networks: dict[str, Any] = {}
    model_dirs: dict[str, str | None] = {}
    for name, stage in REQUIRED_DIRS.items():
        path = os.path.join(models_dir, name)
        try:
            networks[name] = stage_files.load_stage_model(path, stage)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"required model missing: {e} (conceptmask-pipeline "
                                    f"trains all stages into <work_dir>/models)") from None
        model_dirs[name] = path
    missing = []
    for name, stage in OPTIONAL_DIRS.items():
        path = os.path.join(models_dir, name)
        if files.exists(stage_files.model_path(path, stage)):
            networks[name] = stage_files.load_stage_model(path, stage)
            model_dirs[name] = path
        else:
            logger.warning("%s is missing: %s are reported as null", path,
                           " and ".join(FEEDS[name]))
            missing.append(name)
            model_dirs[name] = None
    configs = {name: read_stage_config(path).get("config", {})
               for name, path in model_dirs.items() if path}
    if image_size is None:
        image_size = configs["segmentation"].get("image_size") or configs["refinement"].get(
            "image_size")
    if not image_size:
        raise ValueError(f"no image size: {models_dir}/segmentation/{CONFIG_FILE} has no "
                         "image_size; pass it explicitly")
    scales = _scales(configs["segmentation"], networks["segmentation"], (1.0, 2.0))
    single = ()
    if "segmentation_single_att" in networks:
        single = _scales(configs["segmentation_single_att"],
                         networks["segmentation_single_att"], scales)
    saliency_size = configs.get("saliency", {}).get("image_size")
    return StageNetworks(models_dir, networks, model_dirs, missing, int(image_size), scales,
                         single, None if saliency_size is None else int(saliency_size),
                         configs["segmentation"].get("weak_attention", "refined"))


def _scales(config: dict[str, Any], network: Any, default: Sequence[float]
            ) -> tuple[float, ...]:
    """The attention scales a segmentation network was trained with (its config.json)."""
    scales = tuple(float(s) for s in config.get("attention_scales", default))
    if config.get("single_att"):
        scales = scales[:1]
    wanted = network.num_attention_maps
    if len(scales) != wanted:
        logger.warning("config.json gives attention scales %s for a segmentation network "
                       "with %d attention inputs: using %s", scales, wanted,
                       tuple(default)[:wanted])
        scales = tuple(float(s) for s in default)[:wanted]
    if len(scales) != wanted:
        raise ValueError(f"the segmentation network takes {wanted} attention maps but only "
                         f"{len(scales)} scales are known ({scales})")
    return scales


def supervised_concepts(networks: StageNetworks, data_root: str | None,
                        embeddings: ConceptEmbeddings) -> tuple[list[str], str]:
    """The box/mask-supervised concepts of the weak-concept rule (paper §4.4).

    The concepts stage 2 trained on (`target_concepts` in the refinement model's
    config.json); failing that, the strong and weak_box concepts of the data root's
    splits.json that contain no zero-shot word (DESIGN.md §3: those are no training
    target). Only concepts with a word vector are kept.

    Args:
        networks: The loaded networks.
        data_root: The data root, or None (then only target_concepts can name them).
        embeddings: The word vectors.

    Returns:
        (concepts, where they came from: "refinement target_concepts", "splits.json" or
        "none").
    """
    runtime = read_stage_config(networks.model_dirs["refinement"]).get("runtime", {})
    concepts, source = runtime.get("target_concepts"), "refinement target_concepts"
    if not concepts and data_root is None:
        logger.warning("%s/%s names no target_concepts and no data root was given: the "
                       "weak-concept rule (paper §4.4) is off",
                       networks.model_dirs["refinement"], CONFIG_FILE)
        return [], "none"
    if not concepts:
        root = DataRoot(data_root)
        if files.exists(root.splits):
            levels = read_splits(root.splits)
            concepts = [c for level in SUPERVISED_LEVELS for c in levels[level]]
            held_out = held_out_concepts(concepts, levels["zero_shot"])
            if held_out:
                logger.warning("not supervised, containing a zero-shot word: %s",
                               ", ".join(sorted(held_out)))
            concepts = [c for c in concepts if c not in held_out]
            source = "splits.json"
        else:
            concepts, source = [], "none"
    kept = [c for c in concepts if c in embeddings]
    if not kept:
        logger.warning("no supervised concept with a word vector: the weak-concept rule "
                       "(paper §4.4) is off")
    return kept, source
