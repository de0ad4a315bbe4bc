"""Synthetic tag corpus at the paper's scale (Stock-18K: 6M images x ~30 tags, 18K vocabulary).

Writes a ``tags.jsonl`` file in the data-root format, fast enough to generate 6M lines in
about a minute: tag draws are vectorised in numpy and lines are assembled as bytes from a
padded token table, never through ``json.dumps``.

The tag distribution has the two properties that make concept vectors realistic:

* Tag frequencies follow a global Zipf-Mandelbrot law, p(rank r) ~ 1 / (r + 15): the most
  frequent tag is in ~20% of the images, the rarest in ~0.02%.
* Latent topic structure, so that PMI is informative: there are V / 10 topics, each a set of 40
  tags drawn by the global law, with Zipf popularity. An image picks two topics; 70% of its tag
  draws come from them and 30% from the global law (background noise). Duplicate draws are
  dropped, so images carry ~30 distinct tags on average.

Used by ``concept_vectors_scale.py``; also runnable on its own:

    python benchmarks/concept_vectors_corpus.py --out benchmarks/out/tags.jsonl --num_images 100000
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

_ZIPF_OFFSET = 15.0
_TOPIC_SIZE = 40
_TOPICS_PER_IMAGE = 2
_TOPIC_FRACTION = 0.7
_CHUNK_IMAGES = 200_000


def tag_names(vocab: int, rng: np.random.Generator) -> list[str]:
    """`vocab` distinct pronounceable names; ~10% are two-word phrases ("bakotu rima")."""
    consonants = list("bdfgklmnprstvz")
    vowels = list("aeiou")
    syllables = [c + v for c in consonants for v in vowels]
    names: dict[str, None] = {}
    while len(names) < vocab:
        count = rng.integers(2, 5)
        word = "".join(rng.choice(syllables, size=count))
        if rng.random() < 0.1:
            word += " " + "".join(rng.choice(syllables, size=2))
        names[word] = None
    return list(names)


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, dtype=np.float64)
    return cdf / cdf[-1]


def _distinct_rows(draws: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keeps the first occurrence of each tag per row, in draw order.

    Args:
        draws: int32 [n, k_max] tag draws; entries at or past `counts` are padding.
        counts: int [n] number of valid draws per row.

    Returns:
        (indptr int64 [n + 1], tag_ids int32 [nnz]) of the de-duplicated rows.
    """
    n, k_max = draws.shape
    valid = np.arange(k_max)[None, :] < counts[:, None]  # [n, k_max]
    keyed = np.where(valid, draws, np.iinfo(np.int32).max)
    order = np.argsort(keyed, axis=1, kind="stable")  # [n, k_max]
    ordered = np.take_along_axis(keyed, order, axis=1)
    repeat_sorted = np.zeros_like(valid)
    repeat_sorted[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    repeat = np.zeros_like(valid)
    np.put_along_axis(repeat, order, repeat_sorted, axis=1)
    keep = valid & ~repeat
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    return indptr, draws[keep]


def sample_tags(num_images: int, vocab: int, mean_tags: float, rng: np.random.Generator,
                topics: np.ndarray, topic_cdf: np.ndarray, tag_cdf: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Draws the distinct tags of `num_images` images (CSR: indptr [n + 1], tag_ids [nnz])."""
    # ~12% of draws repeat a tag; draw more so that the distinct mean is about `mean_tags`.
    counts = np.maximum(rng.poisson(mean_tags * 1.14, size=num_images), 1)
    k_max = int(counts.max())
    image_topics = np.searchsorted(topic_cdf, rng.random((num_images, _TOPICS_PER_IMAGE)))
    which = rng.integers(0, _TOPICS_PER_IMAGE, size=(num_images, k_max))
    topic = np.take_along_axis(image_topics, which, axis=1)  # [n, k_max]
    from_topic = topics[topic, rng.integers(0, _TOPIC_SIZE, size=(num_images, k_max))]
    background = np.searchsorted(tag_cdf, rng.random((num_images, k_max))).astype(np.int32)
    draws = np.where(rng.random((num_images, k_max)) < _TOPIC_FRACTION, from_topic, background)
    return _distinct_rows(np.minimum(draws, vocab - 1).astype(np.int32), counts)


class _LineWriter:
    """Assembles JSONL lines from a padded byte table: one gather + one mask per chunk."""

    def __init__(self, names: list[str], image_digits: int) -> None:
        first = [f'"{n}"'.encode() for n in names]
        other = [f', "{n}"'.encode() for n in names]
        self._vocab = len(names)
        self._digits = image_digits
        self._head = b'{"image": "images/'
        self._head_tail = b'.jpg", "tags": ['
        self._end = b"]}\n"
        fixed = first + other + [self._end]
        head_len = len(self._head) + image_digits + len(self._head_tail)
        self._width = max(max(len(b) for b in fixed), head_len)
        self._table = np.zeros((len(fixed), self._width), np.uint8)
        self._lens = np.zeros(len(fixed), np.int64)
        for i, b in enumerate(fixed):
            self._table[i, :len(b)] = np.frombuffer(b, np.uint8)
            self._lens[i] = len(b)
        self._head_len = head_len

    def lines(self, first_image: int, indptr: np.ndarray, tag_ids: np.ndarray) -> bytes:
        """Bytes of the lines for images first_image.. with the given CSR tags."""
        n = len(indptr) - 1
        # Per-image head rows: '{"image": "images/00000042.jpg", "tags": ['.
        heads = np.zeros((n, self._width), np.uint8)
        heads[:, :len(self._head)] = np.frombuffer(self._head, np.uint8)
        numbers = np.arange(first_image, first_image + n, dtype=np.int64)
        for d in range(self._digits):
            place = 10 ** (self._digits - 1 - d)
            heads[:, len(self._head) + d] = ord("0") + (numbers // place) % 10
        start = len(self._head) + self._digits
        heads[:, start:start + len(self._head_tail)] = np.frombuffer(self._head_tail, np.uint8)
        table = np.concatenate([self._table, heads])
        lens = np.concatenate([self._lens, np.full(n, self._head_len)])
        # Token sequence: head_r, tags of r (first form, then ", " form), end.
        per_image = np.diff(indptr)
        is_first = np.zeros(len(tag_ids), bool)
        is_first[indptr[:-1][per_image > 0]] = True
        tag_rows = tag_ids.astype(np.int64) + np.where(is_first, 0, self._vocab)
        seq_len = per_image + 2
        seq_ptr = np.zeros(n + 1, np.int64)
        np.cumsum(seq_len, out=seq_ptr[1:])
        seq = np.full(seq_ptr[-1], 2 * self._vocab, np.int64)  # default: end row
        seq[seq_ptr[:-1]] = len(self._table) + np.arange(n)  # head rows
        tag_slots = np.ones(seq_ptr[-1], bool)
        tag_slots[seq_ptr[:-1]] = False
        tag_slots[seq_ptr[1:] - 1] = False
        seq[tag_slots] = tag_rows
        rows = table[seq]  # [tokens, width]
        mask = np.arange(self._width)[None, :] < lens[seq][:, None]
        return rows[mask].tobytes()


def write_corpus(path: str, num_images: int, vocab: int = 18_000, mean_tags: float = 30.0,
                 seed: int = 0, log: bool = True) -> dict:
    """Writes a synthetic tags.jsonl and returns a small summary dict.

    Args:
        path: Output file (its folder is created).
        num_images: Number of lines (images).
        vocab: Number of distinct tags.
        mean_tags: Mean number of distinct tags per image.
        seed: Random seed; the same arguments give the same file.
        log: Print progress.
    """
    rng = np.random.default_rng(seed)
    names = tag_names(vocab, rng)
    ranks = np.arange(1, vocab + 1, dtype=np.float64)
    tag_cdf = _cdf(1.0 / (ranks + _ZIPF_OFFSET))
    num_topics = max(vocab // 10, 2)
    topic_cdf = _cdf(1.0 / (np.arange(1, num_topics + 1) + 5.0))
    topics = np.searchsorted(tag_cdf, rng.random((num_topics, _TOPIC_SIZE))).astype(np.int32)
    topics = np.minimum(topics, vocab - 1)
    writer = _LineWriter(names, image_digits=max(8, len(str(num_images))))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    start = time.time()
    total_tags = 0
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for first in range(0, num_images, _CHUNK_IMAGES):
            n = min(_CHUNK_IMAGES, num_images - first)
            indptr, tag_ids = sample_tags(n, vocab, mean_tags, rng, topics, topic_cdf, tag_cdf)
            total_tags += len(tag_ids)
            f.write(writer.lines(first, indptr, tag_ids))
            if log:
                print(f"\rgenerated {first + n:,}/{num_images:,} images "
                      f"({time.time() - start:.0f} s)", end="", flush=True)
    os.replace(tmp, path)
    if log:
        print()
    return {"num_images": num_images, "vocab": vocab, "tags": total_tags,
            "mean_tags": total_tags / max(num_images, 1), "bytes": os.path.getsize(path),
            "seconds": time.time() - start, "seed": seed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--num_images", type=int, default=6_000_000)
    parser.add_argument("--vocab", type=int, default=18_000)
    parser.add_argument("--mean_tags", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_corpus(args.out, args.num_images, args.vocab, args.mean_tags, args.seed))


if __name__ == "__main__":
    main()
