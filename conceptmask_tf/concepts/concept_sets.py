"""Which concepts each stage trains on, and the stage-1 soft-topic targets.

Supervision levels come from the data root's splits.json: stage 2 trains on box concepts
of the `strong` and `weak_box` levels, stage 3 on mask concepts of the `strong` level.
Zero-shot concepts are never a target, and neither is a concept that contains one as a word
("red bus" when "bus" is zero-shot, DESIGN.md §3; `contains_concept`): such *held-out*
concepts are found in the vocabulary and in splits.json (`held_out_concepts`). Both kinds
(`TrainingConcepts.excluded`) give no weight to stage-1 soft-topic vectors, and are never a
box, mask, matching or spatial-discrimination concept. Without splits.json every annotated
concept in the vocabulary is a target and nothing is zero-shot.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterable, Sequence

import numpy as np

from conceptmask_tf.base import files
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
# Stage facts (config.json "runtime"): the zero-shot concepts and the held-out ones.
ZERO_SHOT_FACT = "zero_shot_excluded"
HELD_OUT_FACT = "zero_shot_word_excluded"
_LISTED = 10  # concepts named in a log line

logger = logging.getLogger(__name__)


def contains_concept(concept: str, other: str) -> bool:
    """True if `other`'s words appear in `concept` as a contiguous word sequence.

    Names are normalised (`concepts.names.normalize_concept`), so words are the
    space-separated tokens: "red bus" contains "bus" and "red bus"; "busy road" does not
    contain "bus"; "chocolate ice cream" contains "ice cream", "ice cream" does not
    contain "ice cream cone", and "cream ice" does not contain "ice cream".
    """
    words, part = concept.split(), other.split()
    n = len(part)
    return n > 0 and any(words[i:i + n] == part for i in range(len(words) - n + 1))


def held_out_concepts(names: Iterable[str], zero_shot: Iterable[str]) -> frozenset[str]:
    """Concepts of `names` that contain a zero-shot concept as a word but are not zero-shot.

    Such a concept is no training target of any stage (DESIGN.md §3), e.g. "red bus" when
    "bus" is zero-shot. Same rule as `contains_concept`, via a set of the zero-shot word
    sequences (linear in the number of names).

    Args:
        names: Normalised concept names (a vocabulary, the concepts of splits.json).
        zero_shot: The zero-shot concepts.

    Returns:
        The held-out concepts among `names`.
    """
    zero_shot = set(zero_shot)
    sequences = {tuple(z.split()) for z in zero_shot}
    sequences.discard(())
    if not sequences:
        return frozenset()
    longest = max(len(q) for q in sequences)
    held_out = set()
    for name in set(names) - zero_shot:
        words = tuple(name.split())
        if any(words[i:j] in sequences for i in range(len(words))
               for j in range(i + 1, min(len(words), i + longest) + 1)):
            held_out.add(name)
    return frozenset(held_out)


def _named(concepts: Iterable[str]) -> str:
    """Up to `_LISTED` sorted names, and how many there are when more."""
    names = sorted(concepts)
    text = ", ".join(names[:_LISTED])
    return text if len(names) <= _LISTED else f"{text}, ... ({len(names)} in all)"


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
        """The zero-shot concepts, as splits.json lists them."""
        return frozenset(self.splits["zero_shot"]) if self.splits else frozenset()

    @functools.cached_property
    def held_out(self) -> frozenset[str]:
        """Vocabulary and splits.json concepts that contain a zero-shot concept as a word
        but are not zero-shot themselves (`held_out_concepts`)."""
        if not self.splits:
            return frozenset()
        names = {*self.embeddings.vocabulary.concepts,
                 *(c for concepts in self.splits.values() for c in concepts)}
        return held_out_concepts(names, self.zero_shot)

    @functools.cached_property
    def excluded(self) -> frozenset[str]:
        """Concepts that are never a training target: zero-shot and held out."""
        return self.zero_shot | self.held_out

    def excluded_rows(self) -> np.ndarray:
        """int32 vocabulary rows of the excluded concepts (zero-shot and held out, those in
        the vocabulary)."""
        return self.embeddings.exclude_rows(sorted(self.excluded)).astype(np.int32)

    def exclusion_facts(self) -> dict[str, list[str]]:
        """For a stage's config.json "runtime": the zero-shot and the held-out concepts."""
        return {ZERO_SHOT_FACT: sorted(self.zero_shot), HELD_OUT_FACT: sorted(self.held_out)}

    def target_index(self, annotated: Iterable[str], levels: Sequence[str],
                     skips: SkipCounter | None = None) -> dict[str, int]:
        """Annotated concepts a stage trains on -> their vocabulary rows.

        A concept is a target if it is in the vocabulary, not excluded (zero-shot or
        containing a zero-shot word) and (with splits.json) at one of `levels`. Others are
        counted in `skips` once each.

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
        excluded = self.excluded
        index = {}
        for concept in sorted(set(annotated)):
            if (concept in index_of and concept not in excluded
                    and (allowed is None or concept in allowed)):
                index[concept] = index_of[concept]
            elif skips is not None:
                skips.note(NOT_A_TARGET, [concept])
        return index


def load_training_concepts(data_root: str, concepts_dir: str) -> TrainingConcepts:
    """Reads concepts.tsv, word_vectors.npy and (if present) splits.json.

    Logs a warning naming the held-out concepts (those containing a zero-shot word).

    Raises:
        FileNotFoundError: concepts.tsv or word_vectors.npy is missing.
        DataError: A malformed file.
    """
    embeddings = ConceptEmbeddings.load(concepts_dir)
    path = DataRoot(data_root).splits
    if files.exists(path):
        concepts = TrainingConcepts(embeddings, splits_lib.read_splits(path))
        if concepts.held_out:
            logger.warning("%d concepts contain a zero-shot concept as a word and are no "
                           "training target of any stage: %s", len(concepts.held_out),
                           _named(concepts.held_out))
        return concepts
    logger.warning("%s does not exist: every annotated concept is a training target and no "
                   "concept is held out as zero-shot", path)
    return TrainingConcepts(embeddings, None)


def soft_topic_targets(corpus: TagCorpus, concepts: TrainingConcepts,
                       skips: SkipCounter) -> tuple[list[str], np.ndarray]:
    """Stage-1 targets: each image's soft-topic vector without excluded concepts (§4.1).

    Tags outside the vocabulary (e.g. below the concepts' min_count) get no weight and
    are counted; images left without any weighted tag are dropped and counted.

    Args:
        corpus: Tags read with image paths (`read_tag_corpus(..., with_images=True)`).
        concepts: The vocabulary and splits.
        skips: Counts dropped tags and images.

    Returns:
        (image paths [N'], targets float32 [N', D]), t = sum_i idf_i w_i over the
        image's tags that are neither zero-shot nor contain a zero-shot word.
    """
    image_of, rows = _tag_vocabulary_rows(corpus, concepts)
    known = rows >= 0
    for name in sorted({corpus.names[i] for i in corpus.tag_ids[~known]}):
        skips.note(TAG_NOT_IN_VOCABULARY, [name])
    per_image = np.bincount(image_of[known], minlength=corpus.num_images)
    indptr = np.concatenate([[0], np.cumsum(per_image)])
    vocabulary = concepts.embeddings.vocabulary
    targets = soft_topic_vectors(indptr, rows[known], concepts.embeddings.vectors,
                                 vocabulary.idf, exclude=concepts.excluded_rows())
    has_target = np.any(targets != 0, axis=1)
    skips.note(NO_TARGET, [str(p) for p in corpus.images[~has_target]])
    return [str(p) for p in corpus.images[has_target]], targets[has_target]


def tag_row_matrix(corpus: TagCorpus, concepts: TrainingConcepts,
                   images: Sequence[str]) -> np.ndarray:
    """Stage-1 tag-loss labels: the vocabulary rows of each image's trainable tags.

    Tags outside the vocabulary and excluded concepts (zero-shot, held out) are left out,
    as in `soft_topic_targets`.

    Args:
        corpus: Tags read with image paths.
        concepts: The vocabulary and splits.
        images: Paths of the corpus to return rows for (e.g. those with a target).

    Returns:
        int32 [len(images), T] rows in file order, -1 padding (T >= 1: the most tags
        of one of `images`).

    Raises:
        ValueError: The corpus has no image paths, or a path is not in it.
    """
    image_of, rows = _tag_vocabulary_rows(corpus, concepts)
    keep = rows >= 0
    keep[keep] = ~np.isin(rows[keep], concepts.excluded_rows())
    image_of, rows = image_of[keep], rows[keep]
    counts = np.bincount(image_of, minlength=corpus.num_images)
    slot = np.arange(len(rows)) - (np.cumsum(counts) - counts)[image_of]  # place in its image
    position = {str(p): i for i, p in enumerate(corpus.images)}
    missing = [str(p) for p in images if str(p) not in position]
    if missing:
        raise ValueError(f"image {missing[0]!r} is not in the tag corpus")
    selected = np.array([position[str(p)] for p in images], np.int64)
    width = max(1, int(counts[selected].max(initial=0)))
    chosen = np.isin(image_of, selected)
    matrix = np.full((corpus.num_images, width), -1, np.int32)
    matrix[image_of[chosen], slot[chosen]] = rows[chosen]
    return matrix[selected]


def _tag_vocabulary_rows(corpus: TagCorpus, concepts: TrainingConcepts
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(image index, vocabulary row or -1 when not in the vocabulary) of every tag, [nnz]."""
    if corpus.images is None:
        raise ValueError("the tag corpus must be read with_images=True")
    index_of = concepts.embeddings.vocabulary.index_of
    row_of_name = np.array([index_of.get(n, -1) for n in corpus.names], np.int64)
    image_of = np.repeat(np.arange(corpus.num_images), np.diff(corpus.indptr))
    return image_of, row_of_name[corpus.tag_ids]
