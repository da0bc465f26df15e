"""Measure cycles per second on fake files against real files for the same scenario.

Each repeat runs, in one process and in a rotating order, the engine
(``stressor.engine.run_stress``) on the same scenario three ways:

- ``real``: real files with kernel inotify, on trio's clock;
- ``fake``: fake files (pyfakefs) with the simulated inotify, on trio's clock,
  as ``stressor run --backend fake`` runs;
- ``fake, virtual time``: fake files under ``VirtualClock`` with trio's scheduler
  made repeatable, as ``stressor replay --backend fake`` runs each cycle.

Two scenarios: ``reference`` alone with the default late write and no pauses
(no finding, so the rate shows what the machinery costs), and the scenario of a
plain ``stressor run``: the default four targets, pauses and hang deadline. There
the positive control ``docker-1.12.1`` hangs, and each hang costs the hang
deadline of waiting, in real time on trio's clock.

Usage: .venv/bin/python benchmarks/fake_vs_real.py [--cycles N] [--repeat R]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Sequence

import trio
from bench_support import describe_machine

from stressor.backends.virtual_time import run_in_virtual_time
from stressor.engine import run_stress
from stressor.record import RunRecord
from stressor.scenario import DEFAULT_TARGETS, Scenario

MODES = ("real", "fake", "fake, virtual time")


@dataclasses.dataclass(frozen=True)
class Case:
    """A scenario to measure: a label, its targets and its pauses in seconds."""

    label: str
    targets: tuple[str, ...]
    max_gap: float
    settle: float


_DEFAULTS = Scenario()
CASES = (
    Case("reference, no pauses", ("reference",), 0.0, 0.0),
    Case("stressor run defaults", DEFAULT_TARGETS, _DEFAULTS.max_gap, _DEFAULTS.settle),
)


def _scenario(case: Case, mode: str, cycles: int, concurrency: int) -> Scenario:
    return Scenario(
        targets=case.targets,
        cycles=cycles,
        duration=None,
        concurrency=concurrency,
        seed=1,
        max_gap=case.max_gap,
        settle=case.settle,
        metrics_port=0,
        backend="real" if mode == "real" else "fake",
    )


def run_once(case: Case, mode: str, cycles: int, concurrency: int) -> tuple[float, int]:
    """Run the case once; return cycles per second of wall time and the hang count."""
    scenario = _scenario(case, mode, cycles, concurrency)
    record = RunRecord(scenario)
    started = time.perf_counter()
    if mode == "fake, virtual time":
        run_in_virtual_time(run_stress, scenario, record, seed="benchmark")
    else:
        trio.run(run_stress, scenario, record)
    wall = time.perf_counter() - started
    expected = cycles * len(case.targets)
    if len(record.results) != expected:
        raise RuntimeError(f"{mode}: {len(record.results)} of {expected} cycles finished")
    hangs = sum(1 for result in record.results if "hang" in result.findings)
    return expected / wall, hangs


def measure(
    args: argparse.Namespace,
) -> dict[tuple[str, str], list[tuple[float, int]]]:
    """Run every case and mode ``args.repeat`` times, rotating the order of the modes."""
    results: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for repeat in range(args.repeat):
        shift = repeat % len(MODES)
        for case in CASES:
            for mode in MODES[shift:] + MODES[:shift]:
                sample = run_once(case, mode, args.cycles, args.concurrency)
                results.setdefault((case.label, mode), []).append(sample)
        print(f"repeat {repeat + 1} of {args.repeat} done", file=sys.stderr)
    return results


def report(args: argparse.Namespace, machine: list[str], results: dict) -> None:
    """Print the Markdown table of rates and of the ratios to the real backend."""
    print("## Cycle rate on fake files against real files\n")
    print(*machine, sep="\n")
    print(
        f"- cycles per target and run: {args.cycles}, concurrency: {args.concurrency},"
        f" repeats: {args.repeat}, hang deadline: {_DEFAULTS.deadline:g} s\n"
    )
    print("| scenario | backend | cycles/s median | min | max | hangs per run | ratio to real |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for case in CASES:
        real = statistics.median(rate for rate, _ in results[(case.label, "real")])
        for mode in MODES:
            rates = [rate for rate, _ in results[(case.label, mode)]]
            hangs = statistics.median(hang for _, hang in results[(case.label, mode)])
            median = statistics.median(rates)
            cells = [case.label, mode, f"{median:.0f}", f"{min(rates):.0f}", f"{max(rates):.0f}"]
            print("| " + " | ".join([*cells, f"{hangs:g}", f"{median / real:.2f}"]) + " |")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--cycles", type=int, default=400, metavar="N",
        help="cycles per target in each run (default: 400)",
    )  # fmt: skip
    parser.add_argument(
        "--repeat", type=int, default=3, metavar="R",
        help="runs of every case and backend; the table shows their median (default: 3)",
    )  # fmt: skip
    parser.add_argument(
        "--concurrency", type=int, default=16, metavar="K",
        help="cycles at once, as stressor run's default (default: 16)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.repeat < 1 or args.concurrency < 1:
        parser.error("--cycles, --repeat and --concurrency must be 1 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    args = parse_args(argv)
    machine = describe_machine()
    results = measure(args)
    report(args, machine, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
