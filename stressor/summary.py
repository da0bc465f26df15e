"""Per-target aggregates of cycle results, as the reports and the summary table show them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

from stressor.results import FINDINGS, HANG, OUTCOMES, CycleResult

QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))


@dataclasses.dataclass(frozen=True)
class Reproduction:
    """How to reproduce one finding: the run seed, the cycle index and the faults."""

    seed: int
    cycle: int
    faults: tuple[str, ...]
    detail: str


@dataclasses.dataclass
class TargetSummary:
    """Everything the reports show about one target.

    ``outcomes`` counts each cycle once under its most serious finding, so its values
    add up to ``cycles``; ``findings`` counts the cycles that showed each finding.
    """

    target: str
    cycles: int = 0
    outcomes: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    findings: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(FINDINGS, 0))
    window_hits: int = 0
    lines_written: int = 0
    lines_read: int = 0
    lines_lost: int = 0
    lines_duplicated: int = 0
    lines_reordered: int = 0
    lines_torn: int = 0
    lines_indeterminate: int = 0
    delivery_latencies: list[float] = dataclasses.field(default_factory=list)
    exit_latencies: list[float] = dataclasses.field(default_factory=list)
    hangs: list[Reproduction] = dataclasses.field(default_factory=list)
    first_findings: dict[str, Reproduction] = dataclasses.field(default_factory=dict)

    def add(self, result: CycleResult) -> None:
        """Fold one cycle's result into the summary."""
        self.cycles += 1
        self.outcomes[result.outcome] += 1
        for finding in result.findings:
            self.findings[finding] += 1
        self.window_hits += result.window_hit
        self.lines_written += result.lines_written
        self.lines_read += result.lines_read
        self.lines_lost += result.lines_lost
        self.lines_duplicated += result.lines_duplicated
        self.lines_reordered += result.lines_reordered
        self.lines_torn += result.lines_torn
        self.lines_indeterminate += result.lines_indeterminate
        self.delivery_latencies.extend(result.delivery_latencies)
        if result.exit_latency is not None:
            self.exit_latencies.append(result.exit_latency)
        reproduction = Reproduction(result.seed, result.cycle, result.faults, result.detail)
        if HANG in result.findings:
            self.hangs.append(reproduction)
        for finding in result.findings:
            first = self.first_findings.get(finding)
            if first is None or result.cycle < first.cycle:
                self.first_findings[finding] = reproduction


def summarize(
    targets: Sequence[str], cycle_results: Iterable[CycleResult]
) -> dict[str, TargetSummary]:
    """Aggregate results per target, keeping the order of ``targets``."""
    summaries = {name: TargetSummary(name) for name in targets}
    for result in cycle_results:
        summaries.setdefault(result.target, TargetSummary(result.target)).add(result)
    return summaries


def quantiles(values: Sequence[float]) -> dict[str, float | None]:
    """Return p50, p90, p99 (nearest rank) and max of ``values``; None for each when empty."""
    result: dict[str, float | None] = {}
    if not values:
        return dict.fromkeys([name for name, _ in QUANTILES] + ["max"])
    ordered = sorted(values)
    for name, fraction in QUANTILES:
        rank = max(1, math.ceil(fraction * len(ordered)))
        result[name] = ordered[rank - 1]
    result["max"] = ordered[-1]
    return result
