"""The concepts step of the pipeline: tag file -> concepts.tsv, word_vectors.npy, overlap.npz.

`build_concepts` is what ``conceptmask-concepts`` (and the pipeline) calls.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from conceptmask_tf.base import files
from conceptmask_tf.base import progress as progress_lib
from conceptmask_tf.concepts import diagnostics as diagnostics_lib
from conceptmask_tf.concepts import overlap_sources
from conceptmask_tf.concepts.embeddings import CONCEPTS_FILE, VECTORS_FILE, ConceptEmbeddings
from conceptmask_tf.concepts.overlap import OverlapMatrix
from conceptmask_tf.concepts.word_vectors import ConceptVectors, concept_vectors_from_corpus
from conceptmask_tf.data import tags as tags_lib
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.skips import SkipCounter

OVERLAP_FILE = "overlap.npz"


@dataclasses.dataclass(frozen=True)
class BuildSummary:
    """What `build_concepts` wrote, for the binary's report."""

    out_dir: str
    num_images: int
    num_tags: int
    concepts: ConceptVectors
    overlap: OverlapMatrix
    overlap_source: str
    skips: SkipCounter
    overlap_skips: SkipCounter
    timer: progress_lib.PhaseTimer
    diagnostics: dict = dataclasses.field(default_factory=dict)

    def text(self) -> str:
        """A short human-readable summary."""
        c = self.concepts
        values = c.eigen.values
        rel = c.eigen.relative_residuals
        dim = c.vectors.shape[1]
        clamped = f" (asked {c.requested_dim}, clamped to V)" if dim != c.requested_dim else ""
        lines = [
            (f"wrote {os.path.join(self.out_dir, CONCEPTS_FILE)}, {VECTORS_FILE} "
             f"(float32 [{len(c.vocabulary)}, {dim}]), {OVERLAP_FILE} and "
             f"{diagnostics_lib.DIAGNOSTICS_FILE}"),
            (f"  images N = {self.num_images:,}, tags = {self.num_tags:,}, "
             f"concepts V = {len(c.vocabulary):,}, dimension D = {dim}{clamped}"),
            (f"  eigenvalues {values[0]:.4g} .. {values[-1]:.4g} "
             f"({int(np.sum(values <= 0))} <= 0 give zero columns); energy kept "
             f"sum(lambda^2) / ||PMI||_F^2 = {c.energy_kept:.1%}"),
            (f"  eigen-solver {c.eigen.method}: max relative residual {rel.max():.1e} "
             f"(median {np.median(rel):.1e}), {c.eigen.cycles} cycles"),
            (f"  overlap ({self.overlap_source}): {len(self.overlap.concepts)} concepts, "
             f"{int(np.sum(self.overlap.gamma > 0))} constrained pairs (gamma > 0)"),
            "  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timer.wall.items()),
        ]
        lines += diagnostics_lib.summary_lines(self.diagnostics) if self.diagnostics else []
        lines += [r for r in (self.skips.report(), self.overlap_skips.report()) if r]
        return "\n".join(lines)


def read_corpus(tags_path: str, label_descriptions: str | None = None,
                skips: SkipCounter | None = None, progress: bool = False) -> tags_lib.TagCorpus:
    """A tags.jsonl file, or Open Images image-level labels when `label_descriptions` is given."""
    if label_descriptions:
        return tags_lib.read_oi_label_corpus(tags_path, label_descriptions, skips)
    return tags_lib.read_tag_corpus(tags_path, skips, progress=progress)


def build_concepts(tags_path: str, out_dir: str, dim: int, min_count: int = 1,
                   label_descriptions: str | None = None, data_root: str | None = None,
                   overlap_source: str = "none", overlap_grid: int = 64,
                   eigen_method: str = "auto", eigen_tol: float = 1e-3, seed: int = 0,
                   strict: bool = False, progress: bool = False) -> BuildSummary:
    """Builds and writes concepts.tsv, word_vectors.npy, overlap.npz and
    vector_diagnostics.json (`concepts.diagnostics`) into `out_dir`.

    Args:
        tags_path: ``tags.jsonl``, or an Open Images image-level labels CSV.
        out_dir: Output folder (created).
        dim: Word-vector dimension D (clamped to V with a warning when larger).
        min_count: Drop concepts held by fewer images.
        label_descriptions: Open Images class descriptions CSV; means `tags_path` is an
            Open Images labels CSV.
        data_root: Data root for the overlap matrix (needed unless overlap_source is "none").
        overlap_source: "none", "masks", "boxes" or "both"; "none" writes an empty overlap.npz.
        overlap_grid: Raster size for masks and boxes.
        eigen_method: "auto", "dense" or "krylov".
        eigen_tol: Relative residual tolerance of the Krylov solver.
        seed: Seed of the eigen-solver.
        strict: Raise on the first bad record instead of counting skips.
        progress: Show progress bars.

    Raises:
        DataError: On malformed input files.
        FileNotFoundError: On a missing input file.
        ValueError: On bad arguments (e.g. no concept left after min_count).
    """
    if overlap_source != "none" and not data_root:
        raise ValueError(f"overlap source {overlap_source!r} needs a data root")
    skips = SkipCounter(tags_path, strict=strict)
    overlap_skips = SkipCounter(data_root or "", strict=strict)
    timer = progress_lib.PhaseTimer()
    with timer.phase("read"):
        corpus = read_corpus(tags_path, label_descriptions, skips, progress)
    concepts = concept_vectors_from_corpus(corpus, dim, min_count, eigen_method, eigen_tol,
                                           seed, progress)
    timer.wall.update(concepts.timer.wall)
    timer.cpu.update(concepts.timer.cpu)
    with timer.phase("overlap"):
        overlap = overlap_sources.overlap_from_data_root(
            DataRoot(data_root or ""), overlap_source, overlap_grid,
            concepts.vocabulary.index_of, overlap_skips, progress)
    with timer.phase("write"):
        files.makedirs(out_dir)
        ConceptEmbeddings(concepts.vocabulary, concepts.vectors).save(out_dir)
        overlap.save(os.path.join(out_dir, OVERLAP_FILE))
        diagnostics = diagnostics_lib.vector_diagnostics(concepts.vocabulary.concepts,
                                                         concepts.vectors)
        diagnostics_lib.save_diagnostics(diagnostics, out_dir)
    return BuildSummary(out_dir, corpus.num_images, len(corpus.tag_ids), concepts, overlap,
                        overlap_source, skips, overlap_skips, timer, diagnostics)
