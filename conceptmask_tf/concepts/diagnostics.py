"""Concepts whose word vectors no stage can serve: zero vectors and near-identical groups.

PMI vectors inherit two blind spots of co-occurrence statistics:

* a tag present in (nearly) every image co-occurs with everything at chance level, so its
  PMI row is ~0 and so is its vector (e.g. "outdoor" in an all-outdoor corpus): its
  attention map is the same for every image;
* tags that always come together (a part and its whole, a scene word and its stuff) get
  near-identical vectors: every stage sees one concept where the user asks for two.

`vector_diagnostics` finds both; `conceptmask-concepts` prints them in its summary and writes
them beside the vectors (`DIAGNOSTICS_FILE`), and the evaluation report marks their rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from conceptmask_tf.base import files

DIAGNOSTICS_FILE = "vector_diagnostics.json"
ZERO_FRACTION = 0.05  # "near zero": norm below this fraction of the median norm
SIMILAR_COSINE = 0.95  # "near identical": cosine at least this
_BLOCK = 2048  # rows of the cosine matrix computed at once (18K concepts: 150 MB a block)


def vector_diagnostics(concepts: Sequence[str], vectors: np.ndarray,
                       zero_fraction: float = ZERO_FRACTION,
                       similar_cosine: float = SIMILAR_COSINE) -> dict[str, Any]:
    """Zero or near-zero vectors and groups of near-identical ones.

    Args:
        concepts: Row names.
        vectors: float [V, D] word vectors.
        zero_fraction: A vector is near zero when its norm is below this fraction of the
            median norm (or exactly 0).
        similar_cosine: Two vectors are near identical when their cosine is at least this;
            groups are the connected components of that relation (near-zero vectors left
            out).

    Returns:
        {"zero": [concept, ...], "near_identical": [[concept, ...], ...] (largest
         cosine first within a group, groups by size), "pairs": [[a, b, cosine], ...]
         (the near-identical pairs, highest first), "thresholds": {...}}.
    """
    vectors = np.asarray(vectors, np.float64)
    if vectors.ndim != 2 or len(vectors) != len(concepts):
        raise ValueError(f"expected [{len(concepts)}, D] vectors, got {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1)
    median = float(np.median(norms)) if len(norms) else 0.0
    zero = (norms == 0) | (norms < zero_fraction * median)
    kept = np.flatnonzero(~zero)
    unit = (vectors[kept] / norms[kept, None]).astype(np.float32)
    found = []
    for start in range(0, len(kept), _BLOCK):  # [block, V'] at a time: bounded memory
        cosine = unit[start:start + _BLOCK] @ unit.T
        rows, cols = np.nonzero(cosine >= similar_cosine)
        upper = cols > rows + start
        found += [(concepts[kept[start + i]], concepts[kept[j]], round(float(cosine[i, j]), 4))
                  for i, j in zip(rows[upper], cols[upper])]
    pairs = sorted(found, key=lambda p: -p[2])
    parent = {c: c for pair in pairs for c in pair[:2]}

    def root(c: str) -> str:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for a, b, _ in pairs:
        parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for c in parent:  # insertion order: highest cosine pairs first
        groups.setdefault(root(c), []).append(c)
    return {"zero": [concepts[i] for i in np.flatnonzero(zero)],
            "near_identical": sorted(groups.values(), key=len, reverse=True),
            "pairs": [list(p) for p in pairs],
            "thresholds": {"zero_fraction_of_median_norm": zero_fraction,
                           "median_norm": median, "similar_cosine": similar_cosine}}


def concept_flags(diagnostics: dict[str, Any]) -> dict[str, str]:
    """concept -> a short note for report rows ("zero vector", "≈ sky, outdoor")."""
    flags = {c: "zero vector" for c in diagnostics.get("zero", ())}
    for group in diagnostics.get("near_identical", ()):
        for concept in group:
            flags[concept] = "≈ " + ", ".join(c for c in group if c != concept)
    return flags


def save_diagnostics(diagnostics: dict[str, Any], directory: str) -> str:
    """Writes `DIAGNOSTICS_FILE` into `directory`; returns its path."""
    path = os.path.join(directory, DIAGNOSTICS_FILE)
    with files.open_file(path, "w", encoding="utf-8") as f:
        json.dump(diagnostics, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return path


def load_diagnostics(directory: str) -> dict[str, Any] | None:
    """The diagnostics beside the vectors in `directory`, or None (older concept dirs)."""
    path = os.path.join(directory, DIAGNOSTICS_FILE)
    if not files.exists(path):
        return None
    return files.read_json(path)


def summary_lines(diagnostics: dict[str, Any], listed: int = 8) -> list[str]:
    """Summary lines for `conceptmask-concepts` (empty when nothing was found)."""
    lines = []
    zero = diagnostics["zero"]
    if zero:
        lines.append(f"  WARNING {len(zero)} concept(s) with a zero or near-zero vector (in "
                     f"nearly every image, or in none with others): "
                     f"{', '.join(zero[:listed])}{' ...' if len(zero) > listed else ''}; their "
                     "attention maps cannot depend on the concept")
    groups = diagnostics["near_identical"]
    if groups:
        cosine = diagnostics["thresholds"]["similar_cosine"]
        shown = "; ".join("{" + ", ".join(g) + "}" for g in groups[:listed])
        lines.append(f"  WARNING {len(groups)} group(s) of near-identical vectors (cosine >= "
                     f"{cosine:g}: tags that always come together), which no stage can tell "
                     f"apart: {shown}{' ...' if len(groups) > listed else ''}")
    return lines
