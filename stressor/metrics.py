"""Prometheus metrics of a run.

``RunMetrics`` turns each finished cycle's ``CycleResult`` into counters and
histograms; ``stressor.exporter`` serves them over HTTP.
"""

from __future__ import annotations

import logging

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stressor.results import HANG, OUTCOMES, CycleResult

log = logging.getLogger(__name__)

NO_FAULT = "none"
"""The ``fault`` label of a cycle that had no injected fault."""

# Expected latencies span about six decades: an inotify follower delivers a line in
# tens of microseconds, a polling follower takes up to its poll interval (commonly 0.1 to 1 s),
# and a follower that returns late after the writer's exit takes seconds. Linear
# buckets would put most of these into one bucket. A 1-2-5 series per decade keeps
# the relative error of a quantile estimate within a factor of 2.5 in every decade,
# and costs 19 buckets.
LATENCY_BUCKETS = tuple(
    mantissa * 10.0**exponent for exponent in range(-5, 1) for mantissa in (1, 2, 5)
) + (10.0,)


class RunMetrics:
    """The metrics of one run, declared on a registry that the caller owns.

    Labels are limited to the target name, the outcome and the fault label, which
    is a fault kind joined to a hook point. Each of these comes from a fixed set, so
    the number of series stays bounded however long the run is.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        """Declare every metric on ``registry``.

        Raises ``ValueError`` when the registry already contains these metric names,
        such as when two ``RunMetrics`` share one registry.
        """
        self._targets: set[str] = set()
        self._faults: set[tuple[str, str]] = set()
        self.cycles = Counter(
            "stressor_cycles",
            "Finished cycles, by their most serious outcome.",
            ["target", "outcome"],
            registry=registry,
        )
        self.hangs = Counter(
            "stressor_hangs",
            "Fault labels of cycles with a hang finding; 'none' for a hang with no fault.",
            ["target", "fault"],
            registry=registry,
        )
        self.faults_injected = Counter(
            "stressor_faults_injected",
            "Faults injected into cycles, by fault kind and hook point.",
            ["target", "fault"],
            registry=registry,
        )
        self.window_hits = Counter(
            "stressor_window_hits",
            "Faults of cycles where a fault landed between the writer's exit and the "
            "follower's watch removal or return.",
            ["target", "fault"],
            registry=registry,
        )
        self.lines_written = Counter(
            "stressor_lines_written",
            "Lines written by the writer and the faults.",
            ["target"],
            registry=registry,
        )
        self.lines_read = Counter(
            "stressor_lines_read",
            "Stressor lines the follower delivered, duplicates included.",
            ["target"],
            registry=registry,
        )
        self.lines_lost = Counter(
            "stressor_lines_lost",
            "Lines written before the follower finished and never delivered.",
            ["target"],
            registry=registry,
        )
        self.lines_duplicated = Counter(
            "stressor_lines_duplicated",
            "Deliveries of a line that was already delivered.",
            ["target"],
            registry=registry,
        )
        self.lines_indeterminate = Counter(
            "stressor_lines_indeterminate",
            "Lines no follower can be blamed for missing: removed by a truncation, or "
            "partial lines never completed.",
            ["target"],
            registry=registry,
        )
        self.findings = Counter(
            "stressor_findings",
            "Cycles with each finding, by the fault labels of the cycle ('none' without).",
            ["target", "fault", "outcome"],
            registry=registry,
        )
        self.delivery_latency = Histogram(
            "stressor_delivery_latency_seconds",
            "Seconds from a line's write to its first delivery.",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.exit_latency = Histogram(
            "stressor_exit_latency_seconds",
            "Seconds from the writer's exit to the follower's return.",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.active_cycles = Gauge(
            "stressor_active_cycles",
            "Cycles started and not yet finished or abandoned.",
            ["target"],
            registry=registry,
        )

    def cycle_started(self, target: str) -> None:
        """Count a cycle of ``target`` as active."""
        self._add_target(target)
        self.active_cycles.labels(target=target).inc()

    def cycle_abandoned(self, target: str) -> None:
        """Stop counting a cycle that was cancelled before it had a result."""
        self._add_target(target)
        self.active_cycles.labels(target=target).dec()

    def cycle_finished(self, result: CycleResult) -> None:
        """Record a finished cycle's outcome, faults, line counts and latencies.

        Call it once per ``cycle_started`` of the same target, because it also
        decrements the active cycle gauge. Raises ``ValueError`` when a line count
        is negative, before it changes any metric.
        """
        line_counts = (
            ("lines_written", self.lines_written, result.lines_written),
            ("lines_read", self.lines_read, result.lines_read),
            ("lines_lost", self.lines_lost, result.lines_lost),
            ("lines_duplicated", self.lines_duplicated, result.lines_duplicated),
            ("lines_indeterminate", self.lines_indeterminate, result.lines_indeterminate),
        )
        for name, _, count in line_counts:
            if count < 0:
                raise ValueError(
                    f"invalid {name} {count} in the result of {result.target} cycle "
                    f"{result.cycle}: line counts cannot be negative"
                )

        target = result.target
        self._add_target(target)
        self.active_cycles.labels(target=target).dec()
        self.cycles.labels(target=target, outcome=result.outcome).inc()

        fault_labels = result.faults or (NO_FAULT,)
        for fault in fault_labels:
            self._add_fault(target, fault)
        for fault in result.faults:
            self.faults_injected.labels(target=target, fault=fault).inc()
        if HANG in result.findings:
            for fault in fault_labels:
                self.hangs.labels(target=target, fault=fault).inc()
        if result.window_hit:
            for fault in result.faults:
                self.window_hits.labels(target=target, fault=fault).inc()
        for finding in result.findings:
            for fault in fault_labels:
                self.findings.labels(target=target, fault=fault, outcome=finding).inc()

        for _, counter, count in line_counts:
            counter.labels(target=target).inc(count)

        delivery_latency = self.delivery_latency.labels(target=target)
        for latency in result.delivery_latencies:
            delivery_latency.observe(latency)
        if result.exit_latency is not None:
            self.exit_latency.labels(target=target).observe(result.exit_latency)

    def _add_target(self, target: str) -> None:
        """Create the zero-valued series of a target seen for the first time.

        A series that exists at 0 lets ``rate()`` and dashboards show 0 where a
        missing series would show no data.
        """
        if target in self._targets:
            return
        self._targets.add(target)
        for outcome in OUTCOMES:
            self.cycles.labels(target=target, outcome=outcome)
        per_target = (
            self.lines_written,
            self.lines_read,
            self.lines_lost,
            self.lines_duplicated,
            self.lines_indeterminate,
            self.delivery_latency,
            self.exit_latency,
            self.active_cycles,
        )
        for metric in per_target:
            metric.labels(target=target)
        self._add_fault(target, NO_FAULT)

    def _add_fault(self, target: str, fault: str) -> None:
        """Create the zero-valued series of a fault label seen for the first time."""
        if (target, fault) in self._faults:
            return
        self._faults.add((target, fault))
        self.hangs.labels(target=target, fault=fault)
        if fault != NO_FAULT:
            self.faults_injected.labels(target=target, fault=fault)
            self.window_hits.labels(target=target, fault=fault)


class ServiceMetrics:
    """Metrics about stressor itself: its build, its event loop and its pass or fail state.

    The process metrics (``process_cpu_seconds_total``, ``process_resident_memory_bytes``,
    ``process_open_fds`` and the rest) come from prometheus_client's process collector,
    registered on the same registry.
    """

    def __init__(self, registry: CollectorRegistry, *, version: str) -> None:
        self.build_info = Gauge(
            "stressor_build_info",
            "Always 1; the version label names the running stressor.",
            ["version"],
            registry=registry,
        )
        self.build_info.labels(version=version).set(1)
        prometheus_client.ProcessCollector(registry=registry)
        self.expected_missing = Gauge(
            "stressor_expected_outcome_missing",
            "1 while an outcome the target must show (a positive control) has not been "
            "seen yet, else 0.",
            ["target", "outcome"],
            registry=registry,
        )
        self.unexpected_findings = Counter(
            "stressor_unexpected_findings",
            "Cycles with a finding that the target's expectation does not tolerate; "
            "a target passes while this does not increase.",
            ["target", "outcome"],
            registry=registry,
        )
        self.loop_lag = Gauge(
            "stressor_loop_lag_seconds",
            "How late the event loop woke up at its last check.",
            registry=registry,
        )
        self.loop_overruns = Counter(
            "stressor_loop_overruns",
            "Event loop checks that woke up more than the overrun threshold late.",
            registry=registry,
        )
        self.cycles_per_second = Gauge(
            "stressor_cycles_per_second",
            "Cycles finished per second over the last measuring window.",
            registry=registry,
        )

    def add_target(self, target: str, outcomes: tuple[str, ...], expected: frozenset[str]) -> None:
        """Create a target's series: unexpected findings at 0, expected outcomes missing."""
        for outcome in outcomes:
            self.unexpected_findings.labels(target=target, outcome=outcome)
        for outcome in expected:
            self.expected_missing.labels(target=target, outcome=outcome).set(1)
