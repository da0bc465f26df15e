"""Live progress of a run on standard error."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

import trio

from stressor.results import CycleResult

if TYPE_CHECKING:
    from stressor.scenario import Scenario

# Characters of the progress bar drawn on a terminal.
BAR_WIDTH = 20


class Progress:
    """Count cycles as they end and print a progress line at a steady pace.

    On a terminal the line is redrawn in place every second; otherwise (CI logs) a
    new line is printed every ``plain_interval`` seconds. A run bounded by
    ``total_cycles`` or ``duration`` also shows how far it got and an ETA: by
    cycles finished for the first, by time for the second.
    """

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        *,
        plain_interval: float = 5.0,
        total_cycles: int | None = None,
        duration: float | None = None,
    ) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._interval = 1.0 if self._tty else plain_interval
        self._total = total_cycles
        self._duration = duration
        self._started = 0.0
        self.finished = 0
        self.active = 0
        self.findings = 0
        self.hangs = 0
        self.window_hits = 0

    @classmethod
    def for_scenario(cls, scenario: Scenario, stream: TextIO = sys.stderr) -> Progress:
        """Return the progress of a run of ``scenario``, with its length when bounded."""
        total = None
        if scenario.cycles is not None:
            total = scenario.cycles * len(scenario.targets)
        return cls(stream, total_cycles=total, duration=scenario.duration)

    def cycle_started(self, target: str) -> None:
        """Count a cycle that started."""
        self.active += 1

    def cycle_finished(self, result: CycleResult) -> None:
        """Count a cycle that ended with a verdict."""
        self.active -= 1
        self.finished += 1
        self.findings += bool(result.findings)
        self.hangs += "hang" in result.findings
        self.window_hits += result.window_hit

    def cycle_abandoned(self, target: str) -> None:
        """Count a cycle that was cancelled before its verdict."""
        self.active -= 1

    def line(self) -> str:
        """Return the current progress line."""
        elapsed = trio.current_time() - self._started
        fraction = self._fraction(elapsed)
        parts = []
        if fraction is not None and self._tty:
            filled = round(fraction * BAR_WIDTH)
            parts.append("[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]")
        parts.append(f"[{elapsed:6.1f}s]")
        if fraction is not None:
            parts.append(f"{fraction:.0%}  ETA {self._eta(elapsed)}")
        total = f"/{self._total}" if self._total is not None else ""
        parts.append(
            f"cycles {self.finished}{total}  window {self.window_hits}"
            f"  with findings {self.findings}  hangs {self.hangs}  running {self.active}"
        )
        return "  ".join(parts)

    def _fraction(self, elapsed: float) -> float | None:
        """Return how much of a bounded run is done, from 0 to 1; None when unbounded."""
        if self._total:
            return min(1.0, self.finished / self._total)
        if self._duration:
            return min(1.0, elapsed / self._duration)
        return None

    def _eta(self, elapsed: float) -> str:
        """Return the time left as ``m:ss``; ``?`` before the first cycle of a counted run."""
        if self._total:
            if self.finished == 0:
                return "?"
            left = elapsed / self.finished * (self._total - self.finished)
        else:
            # NOTE: cycles still running when the duration ends may take up to
            # --max-wait more, which this estimate leaves out.
            left = max(0.0, (self._duration or 0.0) - elapsed)
        minutes, seconds = divmod(round(left), 60)
        return f"{minutes}:{seconds:02d}"

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
