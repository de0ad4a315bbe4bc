"""Counted skips: bad records that are dropped are counted and reported, never lost silently.

Every skip reason has a severity, declared by the module that defines the reason, at import
time, next to its constant:

    MISSING = register_skip_reason("missing image file", Severity.BAD_IMAGE_FILE)

A reason reaches a counter only through the module that defines it (or one importing it),
so its severity is registered whenever a counter holds it. Reasons never registered are
`Severity.EXPECTED`.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
from collections.abc import Collection

from conceptmask_tf.errors import DataError

_MAX_EXAMPLES = 3


class Severity(enum.Enum):
    """What a skipped record means for a training run (`SkipCounter.check_bad_fraction`)."""

    # A deliberate filter or a known gap (e.g. a concept that is not a target): reported,
    # never limits a run.
    EXPECTED = "expected"
    # A broken image file (missing, unreadable, ...): counted once per file, among the
    # training examples.
    BAD_IMAGE_FILE = "bad image file"
    # A broken annotation record dropped before it became an example (a box outside its
    # image, an empty mask, ...): counted on top of the training examples.
    BAD_ANNOTATION = "bad annotation"

    @property
    def is_bad(self) -> bool:
        return self is not Severity.EXPECTED


_SEVERITIES: dict[str, Severity] = {}


def register_skip_reason(reason: str, severity: Severity) -> str:
    """Declares the severity of a skip reason; returns the reason (to define its constant).

    Registering a reason again with the same severity is harmless (two readers may share a
    message).

    Raises:
        ValueError: The reason is already registered with another severity.
    """
    known = _SEVERITIES.get(reason)
    if known is not None and known is not severity:
        raise ValueError(f"skip reason {reason!r} is already registered as {known.value!r}, "
                         f"not {severity.value!r}")
    _SEVERITIES[reason] = severity
    return reason


def severity_of(reason: str) -> Severity:
    """The registered severity of `reason` (`Severity.EXPECTED` if never registered)."""
    return _SEVERITIES.get(reason, Severity.EXPECTED)


def reasons_with(severity: Severity) -> frozenset[str]:
    """The reasons registered so far with `severity`."""
    return frozenset(r for r, s in _SEVERITIES.items() if s is severity)


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
    over_limit: DataError | None = None  # set by check_bad_fraction when it raised

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

    def count_with(self, severity: Severity) -> int:
        """Records skipped for reasons of `severity`."""
        return sum(n for reason, n in self.counts.items() if severity_of(reason) is severity)

    def bad_counts(self) -> dict[str, int]:
        """Records skipped per bad reason (any severity but EXPECTED), most common first."""
        return {reason: n for reason, n in self.counts.most_common()
                if severity_of(reason).is_bad}

    def check_bad_fraction(self, num_examples: int, max_fraction: float) -> None:
        """Raises when more than `max_fraction` of the records are bad (--max_bad_fraction).

        Records are the training examples plus the annotation records dropped as broken
        before they became examples (e.g. a box outside its image); bad are those and the
        bad image files found so far, so the fraction is bad records / records. Checked
        before training and, on the running counts, each time a pipeline finds a bad
        image file (`images.ImageReader`). The error is also kept in `over_limit`, for
        the training loop to raise after the pipeline that raised it stopped.

        Raises:
            DataError: Too many bad records; names the fraction, the limit, the flag and
                example records.
        """
        bad_annotations = self.count_with(Severity.BAD_ANNOTATION)
        bad = self.count_with(Severity.BAD_IMAGE_FILE) + bad_annotations
        records = num_examples + bad_annotations
        if not bad or bad <= max_fraction * records:
            return
        details = "; ".join(f"{n} x {r} (e.g. {', '.join(self.examples[r])})"
                            for r, n in self.bad_counts().items())
        self.over_limit = DataError(
            f"{bad} of {records} training records ({bad / records:.1%}) are bad, more than "
            f"--max_bad_fraction={max_fraction:g} allows: {details}. Fix or remove them, or "
            "raise --max_bad_fraction.")
        raise self.over_limit

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
