"""What a long-running run needs besides its cycles: health, loop watch and expectations."""

from __future__ import annotations

import collections
import logging

import trio

from stressor.metrics import ServiceMetrics
from stressor.results import FINDINGS, CycleResult
from stressor.scenario import Scenario

log = logging.getLogger(__name__)

# How often the loop watch wakes up, and how late it may wake before that counts
# as an overrun of the event loop (a task that blocked it).
LOOP_CHECK_INTERVAL = 0.1
LOOP_OVERRUN = 0.1

# A live process's loop watch has checked within this many seconds.
LIVENESS_LIMIT = 5.0

# Cycles per second are measured over this many seconds.
RATE_WINDOW = 10.0


class ServiceState:
    """Health, readiness and pass or fail state of a run, fed as an observer of its cycles.

    It implements the exporter's ``Health``: live while the loop watch keeps
    checking, ready once a cycle has finished.
    """

    def __init__(self, scenario: Scenario, metrics: ServiceMetrics) -> None:
        self._scenario = scenario
        self._metrics = metrics
        self._last_check = trio.current_time()
        self._finish_times: collections.deque[float] = collections.deque()
        self.finished = 0
        self.outcomes: dict[str, collections.Counter[str]] = {}
        self.unexpected: collections.Counter[tuple[str, str]] = collections.Counter()
        for target in scenario.targets:
            metrics.add_target(target, FINDINGS, scenario.expectation_for(target).expect)

    def is_live(self) -> bool:
        """Tell whether the loop watch checked recently."""
        return trio.current_time() - self._last_check < LIVENESS_LIMIT

    def is_ready(self) -> bool:
        """Tell whether at least one cycle has finished."""
        return self.finished > 0

    def cycle_started(self, target: str) -> None:
        """Do nothing: only finished cycles count here."""

    def cycle_abandoned(self, target: str) -> None:
        """Do nothing: only finished cycles count here."""

    def cycle_finished(self, result: CycleResult) -> None:
        """Count the result and every finding the target's expectation does not tolerate."""
        self.finished += 1
        self._finish_times.append(trio.current_time())
        self.outcomes.setdefault(result.target, collections.Counter())[result.outcome] += 1
        expectation = self._scenario.expectation_for(result.target)
        tolerated = expectation.expect | expectation.allow
        for finding in result.findings & expectation.expect:
            self._metrics.expected_missing.labels(target=result.target, outcome=finding).set(0)
        for finding in sorted(result.findings - tolerated):
            self.unexpected[result.target, finding] += 1
            self._metrics.unexpected_findings.labels(target=result.target, outcome=finding).inc()

    def cycles_per_second(self) -> float:
        """Return the finish rate over the last ``RATE_WINDOW`` seconds."""
        horizon = trio.current_time() - RATE_WINDOW
        while self._finish_times and self._finish_times[0] < horizon:
            self._finish_times.popleft()
        return len(self._finish_times) / RATE_WINDOW

    async def watch_loop(self) -> None:
        """Measure how late the event loop wakes up and update the service metrics."""
        while True:
            expected = trio.current_time() + LOOP_CHECK_INTERVAL
            await trio.sleep(LOOP_CHECK_INTERVAL)
            now = trio.current_time()
            lag = max(0.0, now - expected)
            self._last_check = now
            self._metrics.loop_lag.set(lag)
            if lag > LOOP_OVERRUN:
                self._metrics.loop_overruns.inc()
                log.warning("event loop woke up %.3f s late: a task blocked it", lag)
            self._metrics.cycles_per_second.set(self.cycles_per_second())
