"""Concept co-occurrence counts n_ij (images holding both i and j) from a CSR tag corpus.

The count matrix C = X^T X of the binary images x concepts incidence X, computed without a
sparse-sparse product. scipy's product makes two passes with a linked-list accumulator per
output row and, chunked over images, must add up large sparse partial results (the straight
path took 173 s at the paper's scale, DESIGN.md §9). Here:

* Each unordered pair of tags of an image is visited once: the tag at the earlier position
  of the image's list gives the row, the later one the column. One symmetrisation at the end
  completes C. That is half the work of X^T X.
* C is filled row by row (Gustavson's row-wise product): an inverted index (stable radix
  sorts of chunks of the ids) lists the positions of a concept; the later tags of their
  images are gathered with a vectorised ragged index and counted by ``np.bincount`` into
  one cache-resident row. A concept with many pairs is done in slices
  of about `block_pairs` pairs, so every temporary stays small.
* Rows are independent, so worker threads fill different rows: the numpy calls on the
  hot path (cumsum, fancy indexing, bincount) release the GIL.
"""

from __future__ import annotations

import concurrent.futures
import os

import numpy as np

from conceptmask_tf.base import progress as progress_lib

_BLOCK_PAIRS = 1 << 17
_SORT_CHUNK = 1 << 22
_SYMMETRISE_BLOCK = 1024


def id_dtype(vocab_size: int) -> type:
    """The narrowest integer type for concept ids: random gathers then touch fewer cache
    lines and pages, and numpy radix-sorts 16-bit keys."""
    return np.uint16 if vocab_size <= 1 << 16 else np.int32


def relabel(indptr: np.ndarray, tag_ids: np.ndarray,
            id_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maps tag ids through `id_map` and drops those mapped to -1 (rows may become empty).

    Args:
        indptr: int64 [N + 1] CSR row pointers.
        tag_ids: int [nnz] ids in [0, len(id_map)).
        id_map: int [K] new id of each old id, or -1 to drop it.

    Returns:
        (indptr int64 [N + 1], ids [nnz'] of type `id_dtype(max(id_map) + 1)`).
    """
    ids = np.asarray(id_map, np.int32)[tag_ids]
    keep = ids >= 0
    narrow = id_dtype(int(np.max(id_map, initial=-1)) + 1)
    if keep.all():
        return indptr, ids.astype(narrow)
    kept_before = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(keep, out=kept_before[1:])
    return kept_before[indptr], ids[keep].astype(narrow)


def cooccurrence_counts(indptr: np.ndarray, ids: np.ndarray, vocab_size: int,
                        progress: bool = False, block_pairs: int = _BLOCK_PAIRS,
                        threads: int | None = None) -> np.ndarray:
    """Co-occurrence counts of a corpus whose images hold distinct ids.

    Args:
        indptr: int64 [N + 1] CSR row pointers.
        ids: int [nnz] concept ids in [0, vocab_size), distinct within each image.
        vocab_size: V.
        progress: Show a progress bar over the tag occurrences.
        block_pairs: Pairs counted per vectorised step (memory/cache trade-off).
        threads: Worker threads (default: the number of CPUs).

    Returns:
        int32 [V, V] symmetric; C[i, j] = images holding both i and j, C[i, i] = n_i.
    """
    indptr = np.asarray(indptr, np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"ids must lie in [0, {vocab_size})")
    ids = np.asarray(ids, id_dtype(vocab_size))
    later = _later_counts(indptr)
    index = _InvertedIndex(ids, vocab_size)
    counts = np.zeros((vocab_size, vocab_size), np.int32)

    def fill_row(concept: int) -> int:
        occurrences = index.positions(concept)  # int64 [n_concept], ascending
        lens = later[occurrences].astype(np.int64)
        ends = np.cumsum(lens)
        # Slices of about block_pairs pairs: cut where the running pair count crosses a
        # multiple of block_pairs.
        cuts = np.searchsorted(ends, np.arange(block_pairs, ends[-1], block_pairs))
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(lens)]):
            later_ids = _later_ids(occurrences[a:b], lens[a:b], ids)
            if len(later_ids):
                counts[concept] += np.bincount(later_ids.astype(np.int64),
                                               minlength=vocab_size).astype(np.int32)
        return len(occurrences)

    busiest_first = np.argsort(-index.counts, kind="stable")
    busiest_first = busiest_first[index.counts[busiest_first] > 0]
    workers = threads or os.cpu_count() or 1
    with progress_lib.bar(progress, len(ids), "counting pairs (tags done)") as bar, \
            concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for done in pool.map(fill_row, busiest_first.tolist()):
            bar.update(done)
    _symmetrise_inplace(counts)
    counts[np.diag_indices(vocab_size)] = index.counts
    return counts


class _InvertedIndex:
    """Positions of each id in an id array, ascending (from chunked stable sorts).

    Sorting chunks of a few million ids (numpy radix-sorts 16-bit keys) and gluing a
    concept's slices together on demand is several times faster than one global sort or
    a merge of the chunks.
    """

    def __init__(self, ids: np.ndarray, vocab_size: int, chunk: int = _SORT_CHUNK) -> None:
        self._orders = []  # per chunk: int32/int64 positions sorted by id
        self._ptrs = []  # per chunk: int64 [V + 1]
        position_type = np.int32 if len(ids) < np.iinfo(np.int32).max else np.int64
        for s in range(0, len(ids), chunk):
            part = ids[s:s + chunk]
            order = np.argsort(part, kind="stable").astype(position_type)
            order += s
            ptr = np.zeros(vocab_size + 1, np.int64)
            np.cumsum(np.bincount(part.astype(np.int64), minlength=vocab_size), out=ptr[1:])
            self._orders.append(order)
            self._ptrs.append(ptr)
        self.counts = sum((np.diff(p) for p in self._ptrs), np.zeros(vocab_size, np.int64))

    def positions(self, concept: int) -> np.ndarray:
        """int64 positions of `concept`, ascending."""
        parts = [order[ptr[concept]:ptr[concept + 1]]
                 for order, ptr in zip(self._orders, self._ptrs)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def _later_ids(occurrences: np.ndarray, lens: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Ids at the positions after each occurrence, up to the end of its image (concatenated).

    Args:
        occurrences: int64 [m] positions in `ids`.
        lens: int64 [m] number of tags after each occurrence in its image.
        ids: [nnz] concept ids.

    Returns:
        [sum(lens)] ids, of the dtype of `ids`.
    """
    nonempty = lens > 0
    occurrences, lens = occurrences[nonempty], lens[nonempty]
    if not len(lens):
        return np.zeros(0, ids.dtype)
    # Ragged arange: positions occ+1 .. occ+len of each occurrence, back to back, as the
    # running sum of steps of 1 with a jump at each segment start (ufuncs, GIL released).
    segment_start = np.cumsum(lens) - lens
    step = np.ones(int(segment_start[-1] + lens[-1]), np.int64)
    step[0] = occurrences[0] + 1
    step[segment_start[1:]] = occurrences[1:] - occurrences[:-1] - lens[:-1] + 1
    return ids[np.cumsum(step, out=step)]


def _later_counts(indptr: np.ndarray, rows_per_step: int = 1 << 18) -> np.ndarray:
    """[nnz]: number of tags after each position in its image (uint16 when it fits)."""
    lengths = np.diff(indptr)
    small = lengths.max(initial=0) <= np.iinfo(np.uint16).max
    later = np.empty(indptr[-1], np.uint16 if small else np.int64)
    for r in range(0, len(lengths), rows_per_step):
        a, b = indptr[r], indptr[min(r + rows_per_step, len(lengths))]
        ends = np.repeat(indptr[r + 1:r + 1 + rows_per_step], lengths[r:r + rows_per_step])
        later[a:b] = ends - 1 - np.arange(a, b)
    return later


def _symmetrise_inplace(counts: np.ndarray) -> None:
    """counts <- counts + counts^T, block by block (no V x V temporary)."""
    v = len(counts)
    step = _SYMMETRISE_BLOCK
    for i in range(0, v, step):
        rows = slice(i, min(i + step, v))
        counts[rows, rows] += counts[rows, rows].T.copy()
        for j in range(i + step, v, step):
            cols = slice(j, min(j + step, v))
            total = counts[rows, cols] + counts[cols, rows].T
            counts[rows, cols] = total
            counts[cols, rows] = total.T
