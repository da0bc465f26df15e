"""Measure how often each way of injecting a fault reaches the window.

The window runs from the writer's exit to the moment the follower has removed its
watch or returned. For each injection point the script runs the same number of
cycles and reports the share of cycles whose fault landed inside the window, for
``reference``, and the share of cycles in which ``docker-1.12.1`` hung, which is
what reaching the window costs that follower.

The last rows are the naive loop that reproduced the original Docker bug: the
writer writes one line and exits, with no injected fault, over and over. Only the
writer's own line can land in the window there. The follower is told of the exit
at once, or after 5 ms, about what a container's teardown takes (an estimate).

Usage: .venv/bin/python benchmarks/window_hits.py [--cycles N]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import trio
from bench_support import describe_machine

from stressor.engine import run_stress
from stressor.faults import FaultSpec
from stressor.hooks import HookPoint
from stressor.record import RunRecord
from stressor.scenario import Expectation, Scenario


@dataclasses.dataclass(frozen=True)
class Injection:
    """One way of injecting: a label and the scenario settings that make it."""

    label: str
    settings: dict[str, object]


def _late_write(*points: HookPoint, delay: tuple[float, float] = (0.0, 0.0)) -> FaultSpec:
    return FaultSpec("late-write", points, delay=delay)


INJECTIONS = (
    Injection("hook: after-exit", {"points": (HookPoint.AFTER_EXIT,)}),
    Injection("hook: before-remove", {"points": (HookPoint.BEFORE_REMOVE,)}),
    Injection("hook: after-remove", {"points": (HookPoint.AFTER_REMOVE,)}),
    Injection(
        "timing: 1 us to 100 ms after the exit",
        {"points": (), "faults": (_late_write(HookPoint.AFTER_EXIT, delay=(1e-6, 0.1)),)},
    ),
    Injection(
        "naive loop: write, exit at once, repeat",
        {"points": (), "catch_up": False, "settle": 0.0, "lines": 1},
    ),
    Injection(
        "naive loop: write, exit after 5 ms, repeat",
        {"points": (), "catch_up": False, "settle": 0.005, "lines": 1},
    ),
)


async def _run(target: str, cycles: int, settings: dict[str, object]) -> RunRecord:
    tolerate = Expectation(allow=frozenset({"hang", "lost"}))
    scenario = Scenario(
        targets=(target,),
        cycles=cycles,
        duration=None,
        concurrency=32,
        seed=1,
        deadline=0.3,
        metrics_port=0,
        expectations={target: tolerate},
        **settings,  # type: ignore[arg-type]
    )
    record = RunRecord(scenario)
    await run_stress(scenario, record)
    return record


def _share(count: int, total: int) -> str:
    return f"{count}/{total} ({100 * count / total:.0f}%)"


async def measure(cycles: int) -> list[str]:
    """Run every injection against both targets; return Markdown table rows."""
    rows = [
        "| injection | reference: fault in window | docker-1.12.1: cycles that hung |",
        "| --- | --- | --- |",
    ]
    for injection in INJECTIONS:
        reference = await _run("reference", cycles, injection.settings)
        docker = await _run("docker-1.12.1", cycles, injection.settings)
        hits = sum(result.window_hit for result in reference.results)
        hangs = sum("hang" in result.findings for result in docker.results)
        faulted = sum(bool(result.faults) for result in reference.results)
        window = _share(hits, cycles) if faulted else "no fault injected"
        rows.append(f"| {injection.label} | {window} | {_share(hangs, cycles)} |")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Print the machine and the table of window shares."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=300, help="cycles per row and target")
    args = parser.parse_args(argv)
    if args.cycles < 1:
        parser.error(f"--cycles: invalid value {args.cycles}: must be 1 or more")
    print("\n".join(describe_machine()))
    print(f"- command: .venv/bin/python benchmarks/window_hits.py --cycles {args.cycles}\n")
    print("\n".join(trio.run(measure, args.cycles)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
