"""Errors raised on bad user input.

Every error names the file (and where it applies the record) that caused it, so a
user with millions of annotations can find the bad one.
"""

from __future__ import annotations


class DataError(ValueError):
    """An input file or record is malformed, missing or inconsistent.

    Attributes:
        path: The file that holds the problem (or None when it is not file-bound).
        record: A short locator inside the file: a line number, an annotation id,
            a CSV row number, ... (or None).
    """

    def __init__(self, message: str, path: str | None = None,
                              record: str | int | None = None) -> None:
        self.path = path
        self.record = record
        where = ""
        if path is not None:
            where = f"{path}"
            if record is not None:
                where += f" [{record}]"
            where += ": "
        super().__init__(where + message)


class UnknownConceptError(KeyError):
    """A concept (or a word of a phrase) is not in the vocabulary."""

    def __init__(self, concept: str, detail: str = "") -> None:
        self.concept = concept
        msg = f"unknown concept {concept!r}"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return self.args[0]
