"""Which concepts each stage trains on, and the stage-1 soft-topic targets.

Supervision levels come from the data root's splits.json: stage 2 trains on box concepts
of the `strong` and `weak_box` levels, stage 3 on mask concepts of the `strong` level.
Zero-shot concepts are never a target: they give no weight to stage-1 soft-topic vectors,
and are never a box, mask, matching or spatial-discrimination concept. Without splits.json
every annotated concept in the vocabulary is a target and nothing is zero-shot.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence

import numpy as np

from conceptmask_tf.concepts.embeddings import ConceptEmbeddings, soft_topic_vectors
from conceptmask_tf.data import splits as splits_lib
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.tags import TagCorpus

BOX_LEVELS = ("strong", "weak_box")
MASK_LEVELS = ("strong",)
TAG_NOT_IN_VOCABULARY = "tag not in concepts.tsv (no weight in the soft-topic target)"
NO_TARGET = "image with no tag left after zero-shot exclusion (no soft-topic target)"
NOT_A_TARGET = "annotated concept that is not a training target of this stage"

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainingConcepts:
    """The vocabulary with its word vectors and the data root's supervision levels.

    Attributes:
        embeddings: concepts.tsv + word_vectors.npy.
        splits: split -> concepts from splits.json, or None when the data root has none.
    """

    embeddings: ConceptEmbeddings
    splits: dict[str, tuple[str, ...]] | None

    @property
    def zero_shot(self) -> frozenset[str]:
        """Concepts that are never a training target."""
        return frozenset(self.splits["zero_shot"]) if self.splits else frozenset()

    def zero_shot_rows(self) -> np.ndarray:
        """int32 vocabulary rows of the zero-shot concepts (those in the vocabulary)."""
        return self.embeddings.exclude_rows(sorted(self.zero_shot)).astype(np.int32)

    def target_index(self, annotated: Iterable[str], levels: Sequence[str],
                     skips: SkipCounter | None = None) -> dict[str, int]:
        """Annotated concepts a stage trains on -> their vocabulary rows.

        A concept is a target if it is in the vocabulary, not zero-shot and (with
        splits.json) at one of `levels`. Others are counted in `skips` once each.

        Args:
            annotated: Concepts with annotations of the stage's kind (boxes or masks).
            levels: Supervision levels trained on, e.g. `BOX_LEVELS`.
            skips: Counts the annotated concepts left out.

        Returns:
            concept -> row, in sorted concept order.
        """
        allowed = (None if self.splits is None
                   else {c for level in levels for c in self.splits[level]})
        index_of = self.embeddings.vocabulary.index_of
        index = {}
        for concept in sorted(set(annotated)):
            if (concept in index_of and concept not in self.zero_shot
                    and (allowed is None or concept in allowed)):
                index[concept] = index_of[concept]
            elif skips is not None:
                skips.note(NOT_A_TARGET, [concept])
        return index


def load_training_concepts(data_root: str, concepts_dir: str) -> TrainingConcepts:
    """Reads concepts.tsv, word_vectors.npy and (if present) splits.json.

    Raises:
        FileNotFoundError: concepts.tsv or word_vectors.npy is missing.
        DataError: A malformed file.
    """
    embeddings = ConceptEmbeddings.load(concepts_dir)
    path = DataRoot(data_root).splits
    if os.path.exists(path):
        return TrainingConcepts(embeddings, splits_lib.read_splits(path))
    logger.warning("%s does not exist: every annotated concept is a training target and no "
                   "concept is held out as zero-shot", path)
    return TrainingConcepts(embeddings, None)


def soft_topic_targets(corpus: TagCorpus, concepts: TrainingConcepts,
                       skips: SkipCounter) -> tuple[list[str], np.ndarray]:
    """Stage-1 targets: each image's soft-topic vector without zero-shot concepts (§4.1).

    Tags outside the vocabulary (e.g. below the concepts' min_count) get no weight and
    are counted; images left without any weighted tag are dropped and counted.

    Args:
        corpus: Tags read with image paths (`read_tag_corpus(..., with_images=True)`).
        concepts: The vocabulary and splits.
        skips: Counts dropped tags and images.

    Returns:
        (image paths [N'], targets float32 [N', D]), t = sum_i idf_i w_i over the
        image's non-zero-shot tags.
    """
    if corpus.images is None:
        raise ValueError("the tag corpus must be read with_images=True")
    index_of = concepts.embeddings.vocabulary.index_of
    row_of_name = np.array([index_of.get(n, -1) for n in corpus.names], np.int64)
    rows = row_of_name[corpus.tag_ids]  # [nnz] vocabulary rows, -1 = not in the vocabulary
    image_of = np.repeat(np.arange(corpus.num_images), np.diff(corpus.indptr))  # [nnz]
    known = rows >= 0
    for name in sorted({corpus.names[i] for i in corpus.tag_ids[~known]}):
        skips.note(TAG_NOT_IN_VOCABULARY, [name])
    per_image = np.bincount(image_of[known], minlength=corpus.num_images)
    indptr = np.concatenate([[0], np.cumsum(per_image)])
    vocabulary = concepts.embeddings.vocabulary
    targets = soft_topic_vectors(indptr, rows[known], concepts.embeddings.vectors,
                                 vocabulary.idf, exclude=concepts.zero_shot_rows())
    has_target = np.any(targets != 0, axis=1)
    skips.note(NO_TARGET, [str(p) for p in corpus.images[~has_target]])
    return [str(p) for p in corpus.images[has_target]], targets[has_target]
