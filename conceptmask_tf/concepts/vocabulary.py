"""The concept vocabulary: names, image counts n_i, idf -log(n_i / N), concepts.tsv I/O."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np

from conceptmask_tf.base import files
from conceptmask_tf.base.names import normalize_concept
from conceptmask_tf.errors import DataError, UnknownConceptError

TSV_HEADER = "concept\tcount\tidf"


@dataclasses.dataclass(frozen=True, eq=False)
class Vocabulary:
    """Concepts with the number of images that hold each, in a fixed order.

    Row i of ``word_vectors.npy`` belongs to ``concepts[i]``. Build one with `from_counts`
    (which sorts and filters) or `load_tsv`.

    Attributes:
        concepts: Normalised concept names, by count descending then name.
        counts: int64 [V] n_i, the number of images holding concept i.
        num_images: N, the number of images of the tag corpus (including images whose
            concepts were all dropped by a min_count filter).
    """

    concepts: tuple[str, ...]
    counts: np.ndarray
    num_images: int

    def __post_init__(self) -> None:
        if len(self.concepts) != len(self.counts):
            raise ValueError(f"{len(self.concepts)} concepts but {len(self.counts)} counts")
        if len(self.index_of) != len(self.concepts):
            raise ValueError("concept names must be distinct")

    def __len__(self) -> int:
        return len(self.concepts)

    def __contains__(self, concept: object) -> bool:
        return isinstance(concept, str) and normalize_concept(concept) in self.index_of

    @functools.cached_property
    def index_of(self) -> dict[str, int]:
        """Concept name -> row index."""
        return {c: i for i, c in enumerate(self.concepts)}

    @functools.cached_property
    def idf(self) -> np.ndarray:
        """float64 [V]: alpha_i = -log p(w_i) = log(N / n_i)."""
        return np.log(self.num_images / self.counts.astype(np.float64))

    def index(self, concept: str) -> int:
        """Row index of a concept (the name is normalised first).

        Raises:
            UnknownConceptError: If the concept is not in the vocabulary.
        """
        i = self.index_of.get(normalize_concept(concept))
        if i is None:
            raise UnknownConceptError(concept, f"not among the {len(self)} vocabulary concepts")
        return i

    @classmethod
    def from_counts(cls, names: Sequence[str], counts: np.ndarray, num_images: int,
                    min_count: int = 1) -> tuple[Vocabulary, np.ndarray]:
        """Sorts concepts by count (descending, then name) and drops those below min_count.

        Args:
            names: Concept names (as the tag corpus numbers them).
            counts: int [len(names)] images per concept.
            num_images: N.
            min_count: Keep concepts held by at least this many images.

        Returns:
            (vocabulary, id_map) where id_map is int32 [len(names)] mapping an input id to its
            vocabulary row, or -1 when the concept was dropped.
        """
        counts = np.asarray(counts, np.int64)
        keep = np.nonzero(counts >= max(min_count, 1))[0]
        # Sort by (-count, name): names sorted once, counts as the primary key.
        by_name = sorted(keep.tolist(), key=lambda i: names[i])
        order = np.asarray(by_name, np.int64)
        if len(order):
            order = order[np.argsort(-counts[order], kind="stable")]
        id_map = np.full(len(names), -1, np.int32)
        id_map[order] = np.arange(len(order), dtype=np.int32)
        vocab = cls(tuple(names[i] for i in order), counts[order], int(num_images))
        return vocab, id_map

    def save_tsv(self, path: str) -> None:
        """Writes ``concepts.tsv``: header ``concept\\tcount\\tidf``, line i+2 = row i."""
        idf = self.idf
        with files.open_file(path, "w", encoding="utf-8") as f:
            f.write(TSV_HEADER + "\n")
            f.writelines(f"{name}\t{count}\t{a!r}\n" for name, count, a in zip(self.concepts, self.counts.tolist(), idf.tolist()))

    @classmethod
    def load_tsv(cls, path: str) -> Vocabulary:
        """Reads ``concepts.tsv`` (N is recovered from count and idf of the first row).

        Raises:
            DataError: On a wrong header, a malformed line or inconsistent idf values.
        """
        names, counts, idfs = [], [], []
        with files.open_file(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\n")
            if header != TSV_HEADER:
                raise DataError(f"expected header {TSV_HEADER!r}, got {header!r}", path, "line 1")
            for lineno, line in enumerate(f, 2):
                fields = line.rstrip("\n").split("\t")
                try:
                    name, count, idf = fields[0], int(fields[1]), float(fields[2])
                except (IndexError, ValueError):
                    raise DataError("expected concept<TAB>count<TAB>idf", path,
                                    f"line {lineno}") from None
                if count < 1 or not name:
                    raise DataError("empty concept or count < 1", path, f"line {lineno}")
                names.append(name)
                counts.append(count)
                idfs.append(idf)
        num_images = round(counts[0] * math.exp(idfs[0])) if counts else 0
        vocab = cls(tuple(names), np.asarray(counts, np.int64), num_images)
        if counts and not np.allclose(vocab.idf, idfs, rtol=0, atol=1e-6):
            raise DataError(f"idf column disagrees with log(N / count) for N = {num_images}", path)
        return vocab
