"""Optional tqdm progress bars (to stderr) and phase timing for long steps."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any


class _NoBar:
    """Stands in for a tqdm bar when progress display is off."""

    def update(self, n: float = 1) -> None:
        del n

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def bar(enabled: bool, total: float | None, desc: str, unit: str = "it") -> Any:
    """A tqdm bar (a context manager with ``update(n)``), or a silent stand-in."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False)


class PhaseTimer:
    """Wall and CPU (user + system, all threads) seconds of named phases.

    Example:
        timer = PhaseTimer()
        with timer.phase("read"):
            ...
        timer.wall["read"], timer.cpu["read"]
    """

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
