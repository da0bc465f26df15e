"""Measure stressor's cycle rate against GNU ``tail -F`` and its window hits from outside.

Rate: cycles per second of the ``tail-F`` recipe (10 lines, one late write after
the writer's exit), next to a bare loop that does the same work without
stressor: start the same ``tail`` in a new process group, append 10 lines, read
them back from its stdout, send SIGTERM and reap it. Both run K loops at once.
Like the bare loop, stressor's writer appends its lines without pauses, unless
``--max-gap`` adds the random pauses of a scenario.

Window hits: the ``tail-f-pid`` recipe with one late write drawn 10 to 300 ms
(log-uniform) after the writer's PID went away. A cycle is a hit when the write
landed while tail still watched the file. Then the same under strace
with ``close`` held open for 50 ms on entry (tail closes stdout and stderr just
before it exits, so its watch lives that much longer).

Usage: .venv/bin/python benchmarks/external_rate.py [--cycles N] [--concurrency K]
                                                    [--max-gap SECONDS]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

import trio
from bench_support import describe_machine

from stressor.cycle import CycleLimits, CycleSetup, run_cycle
from stressor.faults import FaultSpec
from stressor.hooks import HookPoint
from stressor.results import CycleResult
from stressor.schedule import make_schedule
from stressor.targets.base import Target
from stressor.targets.command import recipe

LINES = 10
TAIL = ["tail", "-n", "+1", "-s", "0.05", "-F"]
LIMITS = CycleLimits(deadline=1.0, max_wait=10.0)
# The writer's longest pause before a line, in seconds (--max-gap).
MAX_GAP = [0.0]


CPU = {"own": 0.0, "children": 0.0}


async def _workers(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Run ``one(index)`` for every index, ``concurrency`` at a time; return seconds taken.

    Also leave in ``CPU`` the CPU seconds per index of this process and of its reaped
    children (the tails and sentinels).
    """
    indices = iter(range(count))

    async def worker() -> None:
        for index in indices:
            await one(index)

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    seconds = time.perf_counter() - started
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU["own"] = (own_after.ru_utime + own_after.ru_stime - own.ru_utime - own.ru_stime) / count
    CPU["children"] = (
        children_after.ru_utime + children_after.ru_stime - children.ru_utime - children.ru_stime
    ) / count
    return seconds


async def stressor_cycles(
    target: Target, count: int, concurrency: int, faults: tuple[FaultSpec, ...], points: tuple
) -> tuple[float, list[CycleResult]]:
    results: list[CycleResult] = []
    with tempfile.TemporaryDirectory() as directory:

        async def one(index: int) -> None:
            schedule = make_schedule(
                1, index, lines=LINES, max_gap=MAX_GAP[0], catch_up=True, settle=0.001,
                points=points, extra_faults=faults,
            )  # fmt: skip
            results.append(await run_cycle(target, schedule, directory, LIMITS, CycleSetup()))

        seconds = await _workers(count, concurrency, one)
    return seconds, results


async def bare_tail_loop(count: int, concurrency: int) -> float:
    """Start ``tail -F``, append LINES lines, read them back, stop and reap it."""
    with tempfile.TemporaryDirectory() as directory:

        async def one(index: int) -> None:
            path = os.path.join(directory, f"{index}.log")
            open(path, "wb").close()
            process = await trio.lowlevel.open_process(
                [*TAIL, path], stdout=subprocess.PIPE, start_new_session=True
            )
            assert process.stdout is not None
            with open(path, "ab", buffering=0) as file:
                for seq in range(1, LINES + 1):
                    file.write(f"stressor w=1 seq={seq} t=0.0\n".encode())
            received = b""
            while received.count(b"\n") < LINES:
                received += await process.stdout.receive_some(65536)
            os.killpg(process.pid, signal.SIGTERM)
            await process.wait()
            await process.stdout.aclose()
            os.unlink(path)

        return await _workers(count, concurrency, one)


async def main(cycles: int, concurrency: int) -> None:
    for line in describe_machine():
        print(line)
    print(
        f"- {cycles} cycles, {concurrency} at once, {LINES} lines each,"
        f" pauses before stressor's lines up to {MAX_GAP[0] * 1000:g} ms"
    )
    print()

    late_write = (HookPoint.AFTER_EXIT,)
    bare = await bare_tail_loop(cycles, concurrency)
    bare_cpu = dict(CPU)
    seconds, results = await stressor_cycles(recipe("tail-F"), cycles, concurrency, (), late_write)
    outcomes = sorted({r.outcome for r in results})
    print("| loop | cycles/s | CPU ms/cycle, this process | CPU ms/cycle, children | outcomes |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(
        f"| bare `tail -F` start, 10 lines, stop | {cycles / bare:.1f}"
        f" | {bare_cpu['own'] * 1000:.2f} | {bare_cpu['children'] * 1000:.2f} | - |"
    )
    print(
        f"| stressor, `tail-F` recipe | {cycles / seconds:.1f} | {CPU['own'] * 1000:.2f}"
        f" | {CPU['children'] * 1000:.2f} | {', '.join(outcomes)} |"
    )
    print(f"\nratio stressor / bare: {bare / seconds:.2f}\n")

    timed = (FaultSpec("late-write", (HookPoint.BEFORE_REMOVE,), delay=(0.01, 0.3)),)
    print("| target | window hits | lost | hang | exit p50 ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    widened = {"close": 0.05} if shutil.which("strace") else None
    runs = [("tail-f-pid", recipe("tail-f-pid"))]
    if widened:
        runs.append(
            ("tail-f-pid under strace, close +50 ms", recipe("tail-f-pid", strace_delays=widened))
        )
    else:
        print(
            "strace is not installed (Debian: apt-get install strace): no widened run",
            file=sys.stderr,
        )
    for label, target in runs:
        _, results = await stressor_cycles(target, cycles, concurrency, timed, ())
        hits = sum(r.window_hit for r in results)
        lost = sum("lost" in r.findings for r in results)
        hangs = sum("hang" in r.findings for r in results)
        exits = sorted(r.exit_latency for r in results if r.exit_latency is not None)
        p50 = exits[len(exits) // 2] * 1000 if exits else float("nan")
        print(f"| {label} | {hits}/{len(results)} | {lost} | {hangs} | {p50:.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--max-gap",
        type=float,
        default=0.0,
        help="maximum pause before each of stressor's lines, in seconds (default 0: the"
        " lines follow each other, as in the bare loop)",
    )
    args = parser.parse_args()
    MAX_GAP[0] = args.max_gap
    trio.run(main, args.cycles, args.concurrency)
