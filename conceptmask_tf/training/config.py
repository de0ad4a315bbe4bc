"""Configuration of the three training stages, and its config.json form.

One frozen dataclass per stage; every field is also a flag of the stage's binary (same name,
help from the field's metadata, see `conceptmask_tf.training.cli`). `train` writes the
*resolved* configuration (steps per epoch filled in from the data, XLA as actually used) to
`<model_dir>/config.json`; `load_config` reads it back into the same dataclass.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from typing import Any

from conceptmask_tf.base import files

CONFIG_FILE = "config.json"
STRATEGIES = ("none", "mirrored", "multi_worker", "tpu")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
MATCHING_BINARIZE = ("min_max", "raw")
GAMMA_RULE_CHOICES = ("symmetric", "paper")  # conceptmask_tf.concepts.overlap.GAMMA_RULES
SIMILARITY_CHOICES = ("cosine", "dot")  # conceptmask_tf.models SIMILARITIES


def _field(default: Any = dataclasses.MISSING, help: str = "", **metadata: Any) -> Any:
    """A dataclass field with flag help (and optional "choices") in its metadata.

    "choices" is a tuple of names, or a function returning one (called when the flags are
    defined or a config is checked, for names that live in a registry).
    """
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def backbone_choices() -> tuple[str, ...]:
    """The registered backbones (`conceptmask_tf.models.backbone.backbone_names`).

    Imported when first asked (it imports Keras), so importing this module stays light.
    """
    from conceptmask_tf.models.backbone import backbone_names

    return backbone_names()


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """What every stage needs: data, output, input size, schedule and runtime.

    Attributes are documented by their `help` metadata (shown by the binaries' --help).
    """

    data_root: str = _field(help="Data root (DESIGN.md §3) with the stage's annotations.")
    shards: str = _field("", "Folder of this stage's training examples as sharded TFRecord "
                             "files (conceptmask-shards): read instead of the data root's "
                             "annotations, for large data (split by file between workers; "
                             "the data root still gives the validation pictures). Empty: "
                             "read the data root.")
    concepts_dir: str = _field(help="Folder with concepts.tsv, word_vectors.npy and "
                                    "overlap.npz (written by conceptmask-concepts).")
    model_dir: str = _field(help="Output folder: final .keras model, config.json, "
                                 "checkpoints/, backup/ (for resuming) and logs/ "
                                 "(TensorBoard).")
    image_size: int = _field(128, "Square input side S of the training images, pixels.")
    batch_size: int = _field(16, "Global batch size (split over the replicas).")
    epochs: int = _field(10, "Training epochs.")
    steps: int | None = _field(None, "Optimizer steps per epoch; default: one pass over the "
                                     "training examples.")
    learning_rate: float = _field(1e-3, "Learning rate.")
    optimizer: str = _field("adam", "Optimizer (sgd uses momentum 0.9).", choices=OPTIMIZERS)
    lr_schedule: str = _field("constant", "Learning rate over the run: constant, or cosine "
                                          "(decays from --learning_rate to 0 over all "
                                          "epochs x steps).", choices=LR_SCHEDULES)
    flip: bool = _field(True, "Random horizontal flips.")
    scale_jitter: float = _field(0.0, "Random zoom-in crops keeping 1 - scale_jitter .. 1 of "
                                      "each side (0 disables).")
    shuffle_buffer: int | None = _field(10_000, "Shuffle buffer, in examples (paths and "
                                                "targets; images are read after it). "
                                                "Bounded, so memory stays flat in the "
                                                "number of examples (None in Python: all).")
    max_bad_fraction: float = _field(0.1, "Stop training when more than this fraction of "
                                          "the training records is bad (boxes or masks "
                                          "outside the image, found before training; "
                                          "unreadable image files, found where the "
                                          "input pipeline reads them); bad records below "
                                          "it are skipped and reported.")
    jit_compile: bool = _field(False, "Compile the train step with XLA (turned off, with a "
                                      "warning, under MirroredStrategy with > 1 replica).")
    distribution_strategy: str = _field("none", "tf.distribute strategy: none (default "
                                                "device), mirrored (all local GPUs, else all "
                                                "logical CPUs), multi_worker, tpu.",
                                        choices=STRATEGIES)
    tpu: str = _field("", "TPU name or address for the cluster resolver "
                          "(--distribution_strategy=tpu; '' = the local TPU VM).")
    mixed_precision: bool = _field(False, "Mixed precision: mixed_float16 on GPU, "
                                          "mixed_bfloat16 on TPU and CPU.")
    seed: int = _field(0, "Seed of initialisation, shuffling and augmentation.")
    save_freq: int = _field(100, "Back up the training state every this many steps "
                                 "(model_dir/backup; a rerun resumes from it).")
    keep_checkpoints: int = _field(2, "Per-epoch checkpoints of the stage network kept in "
                                      "model_dir/checkpoints (0 = none).")
    summary_images: int = _field(4, "Validation images whose attention maps / masks are "
                                    "written to TensorBoard each epoch (0 = none).")

    stage: typing.ClassVar[str] = ""

    def __post_init__(self) -> None:
        problems = []
        for name in ("data_root", "concepts_dir", "model_dir"):
            if not getattr(self, name):
                problems.append(f"{name} is required")
        for name in ("image_size", "batch_size", "epochs", "save_freq"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("steps", "shuffle_buffer"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1 or unset, got {value}")
        for name in ("keep_checkpoints", "summary_images"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            problems.append(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
        if not 0.0 <= self.scale_jitter < 1.0:
            problems.append(f"scale_jitter must be in [0, 1), got {self.scale_jitter}")
        problems.extend(_check_choices(self))
        problems.extend(self._stage_problems())
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    def _stage_problems(self) -> list[str]:
        return []


@dataclasses.dataclass(frozen=True, kw_only=True)
class EmbeddingConfig(TrainingConfig):
    """Stage 1 (paper §4.1): image -> embedding, cosine loss to the soft-topic vector."""

    backbone: str = _field("small_convnet", "Feature extractor (the paper: resnet50).",
                           choices=backbone_choices)
    backbone_weights: str | None = _field(None, "Backbone weights: a local file, or "
                                                "'imagenet' (downloads; keras.applications "
                                                "backbones only); default random init.")
    hidden_dims: tuple[int, ...] = _field((1024, 1024), "Widths of the fc layers before the "
                                                        "last one.")
    final_relu: bool = _field(False, "ReLU after the last fc layer too (the paper's literal "
                                     "head; see EmbeddingModel).")
    pooling: str = _field("after_head", "Average the per-location embeddings (after_head, "
                                        "localises from scratch) or pool before the fc "
                                        "layers (before_head, the paper's order); see "
                                        "EmbeddingModel.", choices=("after_head", "before_head"))
    tag_loss_weight: float = _field(0.0, "Weight of the multiple-instance tag loss added to "
                                         "the cosine loss (a departure, see "
                                         "ConceptTagScores; 0: the paper's loss only). "
                                         "Needs pooling=after_head.")
    tag_loss_temperature: float = _field(0.1, "Softmax temperature pooling each concept's "
                                              "per-location cosines in the tag loss.")

    stage: typing.ClassVar[str] = "embedding"

    def _stage_problems(self) -> list[str]:
        problems = []
        if any(d < 1 for d in self.hidden_dims):
            problems.append(f"hidden_dims must be positive, got {self.hidden_dims}")
        if self.tag_loss_weight < 0:
            problems.append(f"tag_loss_weight must be >= 0, got {self.tag_loss_weight}")
        if self.tag_loss_temperature <= 0:
            problems.append("tag_loss_temperature must be positive, got "
                            f"{self.tag_loss_temperature}")
        if self.tag_loss_weight > 0 and self.pooling != "after_head":
            problems.append("the tag loss scores per-location embeddings: it needs "
                            "pooling=after_head")
        return problems


@dataclasses.dataclass(frozen=True, kw_only=True)
class RefinementConfig(TrainingConfig):
    """Stage 2 (paper §4.2): box loss + c * matching loss + spatial discrimination loss."""

    embedding_model_dir: str = _field(help="Model dir of a trained stage 1 "
                                           "(conceptmask-train-embedding).")
    hidden_dim: int = _field(256, "Hidden width H of the refinement head.")
    finetune_from: str = _field("", "Fine-tune the stage-1 backbone from this layer up: "
                                    "the layers before it keep their stage-1 weights and "
                                    "BatchNorm statistics (e.g. conv2 for the convnets, "
                                    "conv3_block1_1_conv for resnet50). Empty: fine-tune "
                                    "it all (the paper's wording).")
    location_term: bool = _field(False, "Add a concept-independent logit per location to "
                                        "the refinement head (not in the paper; see "
                                        "conceptmask_tf.models.ConceptRefinement).")
    max_concepts: int = _field(8, "Box concepts per image (padded; more are subsampled).")
    matching_top_n: int = _field(800, "N: matching loss over the N concepts with the highest "
                                      "original activation (0 disables it).")
    matching_weight: float = _field(1e-6, "c, the matching loss weight (see "
                                          "conceptmask_tf.losses.matching_loss on its scale).")
    matching_threshold: float = _field(0.5, "Threshold binarising the original attention "
                                            "maps for the matching loss (on the min-max "
                                            "normalised or the raw map, see "
                                            "--matching_binarize).")
    matching_binarize: str = _field("min_max", "Matching targets: threshold each original "
                                               "map after min-max normalisation (min_max: "
                                               "every top-N concept gets a positive region) "
                                               "or its raw cosine (raw: the paper's literal "
                                               "reading; a map below the threshold gives an "
                                               "all-0 target). See "
                                               "conceptmask_tf.losses.matching_loss.",
                                    choices=MATCHING_BINARIZE)
    no_neg: bool = _field(False, "Disable the spatial discrimination loss (the paper's "
                                 "Refined-noNeg ablation).")
    spatial_weight: float = _field(1.0, "Weight of the spatial discrimination loss (each box "
                                        "concept's negatives are a gamma-weighted mean, so "
                                        "1 weighs them like one concept's box loss).")
    gamma_rule: str = _field("symmetric", "Spatial-discrimination weights from the overlap "
                                          "ratio O: symmetric (no constraint between "
                                          "concepts overlapping in either direction, e.g. a "
                                          "part and its whole) or paper (eq. 4 as printed). "
                                          "See conceptmask_tf.concepts.overlap.",
                             choices=GAMMA_RULE_CHOICES)
    similarity: str = _field("cosine", "Coarse attention maps: cosine (default) or dot "
                                       "(eq. 1 as written) between word vector and "
                                       "per-location embedding.", choices=SIMILARITY_CHOICES)
    min_box_examples: int = _field(1, "Drop box concepts with fewer images (OIVG-750 filter).")
    label_weight: float = _field(0.0, "Weight of the image-level label loss on the refined "
                                      "maps, from the verified labels of "
                                      "labels/oi_image_labels_train.csv (0 = off, the paper; "
                                      "see conceptmask_tf.losses.ImageLabelLoss).")
    max_labels: int = _field(16, "Verified image-level labels per image for the label loss "
                                 "(more are subsampled).")

    stage: typing.ClassVar[str] = "refinement"

    def _stage_problems(self) -> list[str]:
        problems = []
        if not self.embedding_model_dir:
            problems.append("embedding_model_dir is required")
        for name in ("hidden_dim", "max_concepts", "min_box_examples", "max_labels"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.matching_top_n < 0:
            problems.append(f"matching_top_n must be >= 0, got {self.matching_top_n}")
        if self.matching_weight < 0 or self.spatial_weight < 0 or self.label_weight < 0:
            problems.append("loss weights must be >= 0")
        return problems


@dataclasses.dataclass(frozen=True, kw_only=True)
class MaskNetworkConfig(TrainingConfig):
    """What the stage-3 segmentation network and the saliency baseline share: the
    encoder-decoder's widths and the mask loss."""

    encoder_widths: tuple[int, ...] = _field((32, 64, 96, 128), "Channels of the four "
                                                                "encoder stages.")
    decoder_widths: tuple[int, ...] = _field((64, 32, 16), "Channels of the three decoder "
                                                           "blocks.")
    positive_weight: float = _field(1.0, "Weight of mask pixels in the mask loss (see "
                                         "MaskLoss; 1 = plain cross-entropy).")

    def _stage_problems(self) -> list[str]:
        problems = []
        if len(self.encoder_widths) != 4 or len(self.decoder_widths) != 3:
            problems.append("need 4 encoder_widths and 3 decoder_widths")
        if self.positive_weight <= 0:
            problems.append(f"positive_weight must be > 0, got {self.positive_weight}")
        return problems


@dataclasses.dataclass(frozen=True, kw_only=True)
class SegmentationConfig(MaskNetworkConfig):
    """Stage 3 (paper §4.3): label-agnostic masks from the image and frozen stage-2 attention."""

    refinement_model_dir: str = _field(help="Model dir of a trained stage 2 "
                                            "(conceptmask-train-refinement).")
    single_att: bool = _field(False, "One attention scale (the first of attention_scales): "
                                     "the paper's Ours-singleAtt ablation.")
    attention_scales: tuple[float, ...] = _field((1.0, 2.0), "Input scales, relative to "
                                                             "image_size, of the attention "
                                                             "passes (the paper: 300 and 700 "
                                                             "px).")
    guided_attention_rate: float = _field(0.0, "Fraction of training examples whose "
                                               "attention maps are blended with their "
                                               "coarse ground-truth mask (weight ~ U(0, 1)) "
                                               "so the network learns to follow attention; "
                                               "0 = the paper.")
    weak_attention: str = _field("refined", "Own attention map of the concepts outside "
                                            "the supervised set in the composed model "
                                            "(evaluation, export; paper section 4.4): "
                                            "refined (the paper) or original (stage 1's "
                                            "map, departure 21 in docs/method.md). Stage-3 training "
                                            "sees supervised concepts only and does not "
                                            "use it.", choices=("refined", "original"))
    cache_attention: bool = _field(False, "Run the frozen stage-2 passes once per example "
                                          "before training and give each epoch's crop and "
                                          "flip to the cached maps (about half of a step's "
                                          "time; exact without scale_jitter, approximate "
                                          "with it; holds every example's maps in memory).")

    stage: typing.ClassVar[str] = "segmentation"

    @property
    def scales(self) -> tuple[float, ...]:
        """The attention scales in use (one with single_att)."""
        return self.attention_scales[:1] if self.single_att else self.attention_scales

    def _stage_problems(self) -> list[str]:
        problems = super()._stage_problems()
        if not self.refinement_model_dir:
            problems.append("refinement_model_dir is required")
        if not self.attention_scales or any(s <= 0 for s in self.attention_scales):
            problems.append(f"attention_scales must be positive, got {self.attention_scales}")
        if not 0.0 <= self.guided_attention_rate <= 1.0:
            problems.append("guided_attention_rate must be in [0, 1], got "
                            f"{self.guided_attention_rate}")
        if self.cache_attention and self.shards:
            problems.append("cache_attention holds every example's maps in memory, for "
                            "small data: turn it off to train from shards")
        return problems


@dataclasses.dataclass(frozen=True, kw_only=True)
class SaliencyConfig(MaskNetworkConfig):
    """The saliency baseline (paper §5.3-§5.4): a concept-blind foreground network.

    The stage-3 encoder-decoder without attention input, trained on the stage-3 training
    images to predict the union of the masks of all their mask concepts.
    """

    stage: typing.ClassVar[str] = "saliency"


CONFIG_CLASSES: dict[str, type[TrainingConfig]] = {
    cls.stage: cls
    for cls in (EmbeddingConfig, RefinementConfig, SegmentationConfig, SaliencyConfig)}


def _check_choices(config: TrainingConfig) -> list[str]:
    problems = []
    for field in dataclasses.fields(config):
        choices = field.metadata.get("choices")
        if callable(choices):
            choices = choices()
        value = getattr(config, field.name)
        if choices and value not in choices:
            problems.append(f"{field.name} must be one of {choices}, got {value!r}")
    return problems


def config_to_dict(config: TrainingConfig) -> dict[str, Any]:
    """JSON-ready fields (tuples as lists)."""
    return {f.name: (list(v) if isinstance(v := getattr(config, f.name), tuple) else v)
            for f in dataclasses.fields(config)}


# Fields of earlier versions that config.json files may still hold; read and ignored.
# check_files: the up-front image check, replaced by checks where the pipeline reads.
RETIRED_FIELDS = frozenset({"check_files"})


def config_from_dict(cls: type[TrainingConfig], values: dict[str, Any]) -> TrainingConfig:
    """The inverse of `config_to_dict` (lists back to tuples; unknown keys are an error,
    `RETIRED_FIELDS` are dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in values.items() if k not in RETIRED_FIELDS}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def save_config(config: TrainingConfig, model_dir: str,
                runtime: dict[str, Any] | None = None) -> str:
    """Writes `<model_dir>/config.json`: {"stage", "config", "runtime"}; returns its path.

    Args:
        config: The resolved configuration.
        model_dir: Output folder (created).
        runtime: Facts of the run that are not settings (replicas, precision policy,
            versions, example counts).
    """
    files.makedirs(model_dir)
    path = os.path.join(model_dir, CONFIG_FILE)
    document = {"stage": config.stage, "config": config_to_dict(config),
                "runtime": runtime or {}}
    files.write_atomically(path, json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


def load_config(model_dir: str) -> TrainingConfig:
    """Reads `<model_dir>/config.json` back into its stage's config dataclass.

    Raises:
        FileNotFoundError: No config.json (the folder is not a trained model dir).
        ValueError: An unknown stage or field.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    if not files.exists(path):
        raise FileNotFoundError(f"{path} does not exist: {model_dir!r} is not the model dir "
                                "of a finished training run")
    document = files.read_json(path)
    stage = document.get("stage")
    if stage not in CONFIG_CLASSES:
        raise ValueError(f"{path}: unknown stage {stage!r}")
    return config_from_dict(CONFIG_CLASSES[stage], document["config"])
