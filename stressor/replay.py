"""Replays: the command that runs a cycle again, and running it."""

from __future__ import annotations

import dataclasses
import json
import shlex
import tempfile

from stressor.cycle import CycleLimits, run_cycle
from stressor.results import OK, OUTCOMES, CycleResult
from stressor.scenario import Scenario
from stressor.shrink import describe_schedule, shrink

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
    if scenario.backend != defaults.backend:
        words += ["--backend", scenario.backend]
    if scenario.points != defaults.points:
        for point in scenario.points:
            words += ["--point", point.value]
    return shlex.join(words)


@dataclasses.dataclass(frozen=True)
class ShrinkOptions:
    """How ``replay_cycle`` shrinks a finding: runs per candidate and a time budget."""

    attempts: int = 3
    budget: float = 30.0


async def replay_cycle(
    scenario: Scenario,
    target_name: str,
    cycle: int,
    repeat: int,
    shrinking: ShrinkOptions | None = None,
) -> list[str]:
    """Run one cycle of ``target_name`` ``repeat`` times; return the findings not tolerated.

    With ``shrinking``, the most serious finding seen is then shrunk to the smallest
    schedule that still shows it, and both schedules are printed.
    """
    schedule = scenario.schedule(cycle)
    limits = CycleLimits(deadline=scenario.deadline, max_wait=scenario.max_wait)
    setup = scenario.cycle_setup()
    target = scenario.target(target_name)
    expectation = scenario.expectation_for(target_name)
    tolerated = expectation.expect | expectation.allow
    problems: list[str] = []
    outcomes: list[str] = []
    print(f"replaying {target_name} seed {scenario.seed} cycle {cycle}: faults", end=" ")
    print(", ".join(fault.describe() for fault in schedule.faults) or "none")
    with tempfile.TemporaryDirectory(prefix="stressor-") as directory:
        for attempt in range(1, repeat + 1):
            result = await run_cycle(target, schedule, directory, limits, setup)
            detail = f" ({result.detail})" if result.detail else ""
            print(f"attempt {attempt}: {result.outcome}{detail}")
            problems += sorted(result.findings - tolerated)
            outcomes.append(result.outcome)

    found = [outcome for outcome in OUTCOMES if outcome in outcomes and outcome != OK]
    if shrinking is not None and found:
        print(f"shrinking the {found[0]} finding (budget {shrinking.budget:g} s)")
        shrunk = await shrink(
            target,
            schedule,
            found[0],
            limits,
            setup,
            attempts=shrinking.attempts,
            budget=shrinking.budget,
        )
        print(f"original: {json.dumps(describe_schedule(shrunk.original))}")
        print(f"smallest: {json.dumps(describe_schedule(shrunk.smallest))}")
        print(f"({shrunk.steps} reductions kept, {shrunk.runs} cycles run)")
    return problems


async def shrink_findings(
    scenario: Scenario, cycle_results: list[CycleResult], budget: float, attempts: int = 3
) -> dict[str, list[dict[str, object]]]:
    """Shrink the first finding of each outcome per target; return report entries by target.

    The budget is shared equally by the findings.
    """
    firsts: dict[tuple[str, str], CycleResult] = {}
    for result in cycle_results:
        for outcome in OUTCOMES:
            if outcome in result.findings:
                firsts.setdefault((result.target, outcome), result)
    entries: dict[str, list[dict[str, object]]] = {}
    if not firsts:
        return entries
    limits = CycleLimits(deadline=scenario.deadline, max_wait=scenario.max_wait)
    share = budget / len(firsts)
    for (target_name, outcome), result in firsts.items():
        shrunk = await shrink(
            scenario.target(target_name),
            scenario.schedule(result.cycle),
            outcome,
            limits,
            scenario.cycle_setup(),
            attempts=attempts,
            budget=share,
        )
        entries.setdefault(target_name, []).append(
            {
                "outcome": outcome,
                "seed": result.seed,
                "cycle": result.cycle,
                "original": describe_schedule(shrunk.original),
                "smallest": describe_schedule(shrunk.smallest),
                "cycles_run": shrunk.runs,
            }
        )
    return entries
