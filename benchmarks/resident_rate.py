"""Measure a long-lived external follower against the same program started per cycle.

The program is ``examples/watchdog_follower.py --dir``, which follows every
``*.log`` file of a directory. Per cycle (``lifetime = "cycle"``) it starts on
the cycle's own directory and is ended once it printed the end marker. Both
use ``ready = "open"``: the program watches the directory, not each file. Long-lived
(``lifetime = "run"``) it starts once and follows the files of every cycle in one
directory, and after each cycle stressor checks that it let go of the removed
files. Both print on stdout; the long-lived one also runs with ``source = "tcp"``.
Each cycle writes 10 lines with a rename rotation in the middle.

Usage: .venv/bin/python benchmarks/resident_rate.py [--cycles N] [--concurrency K]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import trio
from bench_support import describe_machine

from stressor.cycle import CycleLimits, CycleSetup, run_cycle
from stressor.faults import FaultSpec
from stressor.hooks import HookPoint
from stressor.results import CycleResult
from stressor.schedule import make_schedule
from stressor.targets.base import Target, open_target
from stressor.targets.command import CommandTarget

LINES = 10
LIMITS = CycleLimits(deadline=1.0, max_wait=10.0)
ROTATION = (FaultSpec("rotate", (HookPoint.MID_STREAM,), method="rename-create"),)
PROGRAM = os.path.join(os.path.dirname(__file__), "..", "examples", "watchdog_follower.py")


async def run_cycles(target: Target, count: int, concurrency: int) -> tuple[float, float, list]:
    """Run ``count`` cycles of ``target``; return seconds, CPU ms per cycle and the results."""
    results: list[CycleResult] = []
    indices = iter(range(count))
    with tempfile.TemporaryDirectory() as directory:
        own = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        async with open_target(target, directory) as follower:

            async def worker() -> None:
                for index in indices:
                    schedule = make_schedule(
                        1, index, lines=LINES, max_gap=0.0005, catch_up=True, settle=0.001,
                        points=(), extra_faults=ROTATION,
                    )  # fmt: skip
                    result = await run_cycle(follower, schedule, directory, LIMITS, CycleSetup())
                    results.append(result)

            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(worker)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime) / count
    return seconds, cpu * 1000, results


def shipper(name: str, **settings: object) -> CommandTarget:
    argv = [sys.executable, PROGRAM, "--dir", "{dir}"]
    if settings.get("source") == "tcp":
        argv += ["--port", "{port}"]
    # It watches the directory, not each file: ready once it has the file open.
    return CommandTarget(name, argv, ready="open", **settings)  # type: ignore[arg-type]


async def main(cycles: int, concurrency: int) -> None:
    for line in describe_machine():
        print(line)
    print(f"- {cycles} cycles, {concurrency} at once, {LINES} lines each, one rename rotation")
    print()
    runs = [
        ("started per cycle, stdout", shipper("per-cycle")),
        ("long-lived, stdout", shipper("long-lived", lifetime="run")),
        ("long-lived, TCP", shipper("long-lived-tcp", lifetime="run", source="tcp")),
    ]
    print("| program | cycles/s | CPU ms/cycle, stressor | outcomes |")
    print("| --- | ---: | ---: | --- |")
    rates = {}
    for label, target in runs:
        seconds, cpu, results = await run_cycles(target, cycles, concurrency)
        outcomes: dict[str, int] = {}
        for result in results:
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        rates[label] = cycles / seconds
        summary = ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items()))
        print(f"| {label} | {cycles / seconds:.1f} | {cpu:.2f} | {summary} |")
    ratio = rates["long-lived, stdout"] / rates["started per cycle, stdout"]
    print(f"\nratio long-lived / per cycle (stdout): {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    trio.run(main, args.cycles, args.concurrency)
