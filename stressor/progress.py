"""Live progress of a run on standard error."""

from __future__ import annotations

import sys
from typing import TextIO

import trio

from stressor.results import CycleResult


class Progress:
    """Count cycles as they end and print a progress line at a steady pace.

    On a terminal the line is redrawn in place every second; otherwise (CI logs) a
    new line is printed every ``plain_interval`` seconds.
    """

    def __init__(self, stream: TextIO = sys.stderr, *, plain_interval: float = 5.0) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._interval = 1.0 if self._tty else plain_interval
        self._started = 0.0
        self.finished = 0
        self.active = 0
        self.findings = 0
        self.hangs = 0

    def cycle_started(self, target: str) -> None:
        """Count a cycle that started."""
        self.active += 1

    def cycle_finished(self, result: CycleResult) -> None:
        """Count a cycle that ended with a verdict."""
        self.active -= 1
        self.finished += 1
        self.findings += bool(result.findings)
        self.hangs += "hang" in result.findings

    def cycle_abandoned(self, target: str) -> None:
        """Count a cycle that was cancelled before its verdict."""
        self.active -= 1

    def line(self) -> str:
        """Return the current progress line."""
        elapsed = trio.current_time() - self._started
        return (
            f"[{elapsed:6.1f}s] cycles {self.finished}  with findings {self.findings}"
            f"  hangs {self.hangs}  running {self.active}"
        )

    async def run(self) -> None:
        """Print progress until cancelled, then finish the line."""
        self._started = trio.current_time()
        try:
            while True:
                await trio.sleep(self._interval)
                self._print()
        finally:
            if self._tty:
                self._stream.write("\n")
                self._stream.flush()

    def _print(self) -> None:
        if self._tty:
            self._stream.write("\r" + self.line() + "\x1b[K")
        else:
            self._stream.write(self.line() + "\n")
        self._stream.flush()
