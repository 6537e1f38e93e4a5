"""Progress lines for long-running management commands."""

from __future__ import annotations

import time
from typing import Protocol


class Writer(Protocol):
    def write(self, text: str) -> object: ...

    def flush(self) -> None: ...


class Progress:
    """Print ``label: done/total`` to `out` at most every `interval` seconds, then a last line.

    Quiet for small jobs (`total` below `threshold`), so a command over ten rows prints only
    its summary; a command over thousands shows it is alive.
    """

    def __init__(
        self,
        out: Writer,
        label: str,
        total: int | None,
        *,
        interval: float = 1.0,
        threshold: int = 100,
    ) -> None:
        self.out = out
        self.label = label
        self.total = total
        self.interval = interval
        self.enabled = total is None or total >= threshold
        self.done = 0
        self._last = time.monotonic()

    def update(self, done: int) -> None:
        """Record that `done` items are finished; print if a line is due."""
        self.done = done
        now = time.monotonic()
        if self.enabled and now - self._last >= self.interval:
            self._last = now
            self._write()

    def advance(self, step: int = 1) -> None:
        self.update(self.done + step)

    def finish(self) -> None:
        if self.enabled:
            self._write()

    def _write(self) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        self.out.write(f"{self.label}: {self.done}{of}\n")
        self.out.flush()
