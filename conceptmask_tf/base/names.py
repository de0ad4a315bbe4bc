"""Concept-name normalisation shared by every reader, the concept world and the vocabulary."""

from __future__ import annotations

import re

_NON_WORD = re.compile(r"[^0-9a-z' -]+")
_SPACES = re.compile(r"\s+")


def normalize_concept(name: str) -> str:
    """Lower-cases, maps punctuation and underscores to spaces and collapses white space.

    ``"Red_Car "`` -> ``"red car"``; ``"T-shirt"`` -> ``"t-shirt"``. Returns "" for
    a name with no word characters (callers treat that as a bad record).
    """
    text = name.lower().replace("_", " ")
    text = _NON_WORD.sub(" ", text)
    return _SPACES.sub(" ", text).strip(" '-")
