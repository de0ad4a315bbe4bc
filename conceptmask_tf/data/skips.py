"""Counted skips: bad records that are dropped are counted and reported, never lost silently."""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Collection

from conceptmask_tf.errors import DataError

_MAX_EXAMPLES = 3


@dataclasses.dataclass
class SkipCounter:
    """Counts records skipped for a reason, keeps a few examples, and reports them.

    Readers take an optional counter. With `strict=True` the first bad record raises
    `DataError` instead of being skipped.

    Example:
        skips = SkipCounter("coco/instances_train.json")
        ... skips.skip("box outside the image", path, record=ann_id)
        print(skips.report())
    """

    source: str = ""
    strict: bool = False
    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(list))

    def skip(self, reason: str, path: str | None = None,
                      record: str | int | None = None) -> None:
        """Counts one skipped record (or raises in strict mode)."""
        if self.strict:
            raise DataError(reason, path=path, record=record)
        self.counts[reason] += 1
        if len(self.examples[reason]) < _MAX_EXAMPLES:
            where = path or self.source
            if record is not None:
                where = f"{where} [{record}]"
            self.examples[reason].append(where)

    def note(self, reason: str, examples: list[str]) -> None:
        """Counts records dropped by a deliberate filter (never raises, even when strict).

        Args:
            reason: what filtered them, e.g. "concept with fewer than 5 images".
            examples: one locator per dropped record.
        """
        if not examples:
            return
        self.counts[reason] += len(examples)
        room = max(0, _MAX_EXAMPLES - len(self.examples[reason]))
        self.examples[reason].extend(examples[:room])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count_of(self, reasons: Collection[str]) -> int:
        """Records skipped for any of `reasons`."""
        return sum(n for reason, n in self.counts.items() if reason in reasons)

    def merge(self, other: SkipCounter) -> None:
        """Adds another counter's skips to this one."""
        for reason, n in other.counts.items():
            self.counts[reason] += n
            room = _MAX_EXAMPLES - len(self.examples[reason])
            self.examples[reason].extend(other.examples[reason][:max(room, 0)])

    def report(self) -> str:
        """A human-readable summary, one line per reason (empty string if none)."""
        if not self.counts:
            return ""
        head = f"skipped {self.total} record(s)" + (f" in {self.source}" if self.source else "")
        lines = [head + ":"]
        for reason, n in self.counts.most_common():
            eg = ", ".join(self.examples[reason])
            lines.append(f"  {n} x {reason}" + (f" (e.g. {eg})" if eg else ""))
        return "\n".join(lines)

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)

    def log(self, logger: logging.Logger | None = None) -> None:
        text = self.report()
        if text:
            (logger or logging.getLogger("conceptmask_tf")).warning(text)
