"""Results of cycles: outcomes, per-cycle verdicts and what reports and metrics read."""

from __future__ import annotations

import dataclasses

OK = "ok"
HANG = "hang"
LOST = "lost"
DUPLICATE = "duplicate"
REORDER = "reorder"
TORN = "torn"
CRASH = "crash"
LEAK = "leak"

# Every outcome, most serious first: a cycle's main outcome is the first of its findings.
OUTCOMES = (CRASH, HANG, TORN, LOST, DUPLICATE, REORDER, LEAK, OK)
FINDINGS = tuple(outcome for outcome in OUTCOMES if outcome != OK)


@dataclasses.dataclass(frozen=True)
class CycleResult:
    """The verdict and measurements of one cycle.

    Attributes:
        target: the follower's name.
        seed: the run seed; with ``cycle`` it reproduces the cycle's schedule.
        cycle: the cycle index.
        findings: every finding of the cycle; empty when it passed.
        faults: labels of the faults that were injected, such as
            ``late-write@before-remove``; a scheduled fault whose hook point never
            fired is not among them.
        fault_kinds: the kinds of those faults, such as ``late-write``.
        window_hit: True when a fault landed after the writer's exit and before the
            follower had removed its watch or finished.
        lines_written: lines the writer and the faults wrote.
        lines_read: stressor lines the follower delivered, duplicates included.
        lines_lost: lines written before the follower finished and never delivered.
        lines_duplicated: deliveries of a line already delivered.
        lines_reordered: lines delivered after a later line of the same writer.
        lines_torn: delivered lines that are not whole stressor lines.
        lines_indeterminate: lines no follower can be blamed for missing: removed
            by a truncation, or partial lines that were never completed.
        delivery_latencies: seconds from each line's write to its first delivery.
        exit_latency: seconds from the writer's exit to the follower's return, or
            None when the follower did not return.
        detail: a sentence on what went wrong, empty when nothing did.
    """

    target: str
    seed: int
    cycle: int
    findings: frozenset[str]
    faults: tuple[str, ...]
    fault_kinds: tuple[str, ...]
    window_hit: bool
    lines_written: int
    lines_read: int
    lines_lost: int
    lines_duplicated: int
    lines_reordered: int
    lines_torn: int
    delivery_latencies: tuple[float, ...]
    exit_latency: float | None
    detail: str = ""
    lines_indeterminate: int = 0

    @property
    def outcome(self) -> str:
        """Return the most serious finding, or ``ok``."""
        for outcome in OUTCOMES:
            if outcome in self.findings:
                return outcome
        return OK
