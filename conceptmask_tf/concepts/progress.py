"""Optional tqdm progress bars (to stderr) for long steps."""

from __future__ import annotations

from typing import Any


class _NoBar:
    """Stands in for a tqdm bar when progress display is off."""

    def update(self, n: float = 1) -> None:
        del n

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def bar(enabled: bool, total: float | None, desc: str, unit: str = "it") -> Any:
    """A tqdm bar (a context manager with ``update(n)``), or a silent stand-in."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False)
