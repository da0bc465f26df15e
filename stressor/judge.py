"""Judge each target's summary against its expectation."""

from __future__ import annotations

from stressor.scenario import Expectation
from stressor.summary import TargetSummary


def judge(
    summary: TargetSummary,
    expectation: Expectation,
    *,
    tolerate_hint: str = "--allow {target}={finding}",
) -> list[str]:
    """Return why the target failed its expectation; an empty list means it passed.

    ``tolerate_hint`` is the advice on how to tolerate an unexpected finding. It is
    formatted with ``target`` and ``finding``, so the Python API can give its own.
    """
    name = summary.target
    problems = []
    if summary.cycles == 0:
        problems.append(f"{name}: no cycle finished, so nothing was checked")

    for finding, count in summary.findings.items():
        if count and finding not in expectation.expect | expectation.allow:
            problems.append(
                f"{name}: {finding} in {count} of {summary.cycles} cycles"
                f" (to tolerate it: {tolerate_hint.format(target=name, finding=finding)})"
            )
    for finding in sorted(expectation.expect):
        if summary.cycles and not summary.findings.get(finding):
            problems.append(
                f"{name}: expected {finding} never happened in {summary.cycles} cycles,"
                " so the run could not have caught this kind of bug"
            )
    return problems
