"""Replays: the command that runs a cycle again, and running it."""

from __future__ import annotations

import shlex
import tempfile

from stressor.cycle import CycleLimits, run_cycle
from stressor.scenario import Scenario
from stressor.targets import get_target

# Scenario fields that shape a cycle's schedule or verdict -> the option that sets them.
_SCHEDULE_OPTIONS = {
    "lines": "--lines",
    "max_gap": "--max-gap",
    "settle": "--settle",
    "fault_probability": "--fault-probability",
    "deadline": "--deadline",
    "max_wait": "--max-wait",
}


def replay_command(
    scenario: Scenario, target: str, seed: int, cycle: int, scenario_path: str | None
) -> str:
    """Return the command that runs the finding's cycle again with the same schedule.

    Settings that differ from the defaults are spelled out as options, so the
    command is complete even when the run set them on its command line.
    """
    words = ["stressor", "replay"]
    if scenario_path:
        words.append(scenario_path)
    words += ["--target", target, "--seed", str(seed), "--cycle", str(cycle)]
    defaults = Scenario()
    for field, option in _SCHEDULE_OPTIONS.items():
        value = getattr(scenario, field)
        if value != getattr(defaults, field):
            words += [option, repr(value)]
    if not scenario.catch_up:
        words.append("--no-catch-up")
    if scenario.points != defaults.points:
        for point in scenario.points:
            words += ["--point", point.value]
    return shlex.join(words)


async def replay_cycle(scenario: Scenario, target_name: str, cycle: int, repeat: int) -> list[str]:
    """Run one cycle of ``target_name`` ``repeat`` times; return the findings not tolerated."""
    schedule = scenario.schedule(cycle)
    limits = CycleLimits(deadline=scenario.deadline, max_wait=scenario.max_wait)
    target = get_target(target_name)
    expectation = scenario.expectation_for(target_name)
    problems = []
    print(f"replaying {target_name} seed {scenario.seed} cycle {cycle}: faults", end=" ")
    print(", ".join(fault.describe() for fault in schedule.faults) or "none")
    with tempfile.TemporaryDirectory(prefix="stressor-") as directory:
        for attempt in range(1, repeat + 1):
            result = await run_cycle(
                target,
                schedule,
                directory,
                limits,
                scenario.cycle_setup(),
            )
            detail = f" ({result.detail})" if result.detail else ""
            print(f"attempt {attempt}: {result.outcome}{detail}")
            tolerated = expectation.expect | expectation.allow
            problems += sorted(result.findings - tolerated)
    return problems
