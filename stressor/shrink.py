"""Shrinking: find a smaller schedule that still fails the same way.

A candidate is the schedule with one thing taken away or made smaller: a fault
dropped, half of the writer's lines dropped, pauses set to zero, a delay halved,
fewer rotations in a row. The search is greedy: it keeps the first candidate that
still shows the finding and starts over from it, until no candidate does or the
time budget is spent. On real files a finding may show only some of the time, so
each candidate gets several attempts.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Iterator

import trio

from stressor.cycle import CycleLimits, CycleSetup, run_cycle
from stressor.schedule import Schedule
from stressor.targets.base import Target

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ShrinkResult:
    """The smallest failing schedule found, next to the original.

    Attributes:
        original: the schedule that showed the finding.
        smallest: the smallest schedule that still showed it.
        steps: how many reductions were kept.
        runs: how many cycles the search ran.
    """

    original: Schedule
    smallest: Schedule
    steps: int
    runs: int


def schedule_size(schedule: Schedule) -> tuple[int, int, float]:
    """Return a size to minimise: (lines plus faults, rotations, total seconds of pauses)."""
    rotations = sum(fault.count for fault in schedule.faults if fault.kind == "rotate")
    seconds = sum(schedule.gaps) + schedule.settle + sum(f.delay for f in schedule.faults)
    return (len(schedule.gaps) + len(schedule.faults), rotations, seconds)


def describe_schedule(schedule: Schedule) -> dict[str, object]:
    """Return the schedule as JSON-ready fields, for reports and the command line."""
    return {
        "lines": len(schedule.gaps),
        "faults": [fault.describe_fully() for fault in schedule.faults],
        "catch_up": schedule.catch_up,
        "pause_seconds": round(sum(schedule.gaps) + schedule.settle, 6),
        "fault_delays": [round(fault.delay, 6) for fault in schedule.faults],
    }


def _candidates(schedule: Schedule) -> Iterator[Schedule]:
    """Yield schedules that are one step smaller than ``schedule``, larger steps first."""
    faults = schedule.faults
    for index in range(len(faults)):
        yield dataclasses.replace(schedule, faults=faults[:index] + faults[index + 1 :])
    gaps = schedule.gaps
    if len(gaps) > 1:
        yield dataclasses.replace(schedule, gaps=gaps[: len(gaps) // 2])
    if gaps:
        yield dataclasses.replace(schedule, gaps=gaps[:-1])
    if any(gaps) or schedule.settle:
        yield dataclasses.replace(schedule, gaps=tuple(0.0 for _ in gaps), settle=0.0)
    for index, fault in enumerate(faults):
        smaller = []
        if fault.delay > 1e-6:
            smaller.append(dataclasses.replace(fault, delay=fault.delay / 2))
        if fault.count > 1:
            smaller.append(dataclasses.replace(fault, count=fault.count - 1))
        if fault.lines > 1:
            smaller.append(dataclasses.replace(fault, lines=fault.lines // 2))
        for replacement in smaller:
            changed = faults[:index] + (replacement,) + faults[index + 1 :]
            yield dataclasses.replace(schedule, faults=changed)


async def _shows(
    target: Target,
    schedule: Schedule,
    outcome: str,
    limits: CycleLimits,
    setup: CycleSetup,
    attempts: int,
    directory: str,
) -> tuple[bool, int]:
    """Run ``schedule`` up to ``attempts`` times; return whether ``outcome`` showed, and runs."""
    for attempt in range(1, attempts + 1):
        result = await run_cycle(target, schedule, directory, limits, setup)
        if outcome in result.findings:
            return True, attempt
    return False, attempts


async def shrink(
    target: Target,
    schedule: Schedule,
    outcome: str,
    limits: CycleLimits,
    setup: CycleSetup,
    *,
    attempts: int = 3,
    budget: float = 30.0,
) -> ShrinkResult:
    """Search for the smallest schedule on which ``target`` still shows ``outcome``.

    Args:
        attempts: runs per candidate before it counts as not failing.
        budget: seconds the search may take; it returns the best found so far then.
    """
    best = schedule
    steps = 0
    runs = 0
    with tempfile.TemporaryDirectory(prefix="stressor-shrink-") as directory:
        with trio.move_on_after(budget) as scope:
            improved = True
            while improved:
                improved = False
                for candidate in _candidates(best):
                    if schedule_size(candidate) >= schedule_size(best):
                        continue
                    shown, used = await _shows(
                        target, candidate, outcome, limits, setup, attempts, directory
                    )
                    runs += used
                    if shown:
                        best = candidate
                        steps += 1
                        improved = True
                        break
        if scope.cancelled_caught:
            log.info("shrinking %s stopped after its budget of %g s", target.name, budget)
    return ShrinkResult(schedule, best, steps, runs)
