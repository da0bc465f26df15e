"""Measure the time from process start to the first detected hang of ``docker-1.12.1``.

Each repeat starts, in a subprocess and in a rotating order:

- ``stressor targets``, which measures interpreter start-up and imports for comparison.
- For each hang deadline D, ``stressor run --target docker-1.12.1 --cycles 1
  --concurrency 1 --point before-remove --deadline D --metrics-port 0
  --expect docker-1.12.1=hang``, which exits once its one cycle is judged a hang.

The wall time runs from just before the process is started until it has exited. The
run's own ``started_at`` and ``finished_at`` from its JSON report split that time into
the in-run part (the cycle, the hang deadline and its detection) and the rest
(interpreter start-up, imports, report and exit). The target is a median under
1 second plus D.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from bench_support import Spread, describe_machine, format_spread, stressor_command

TARGET = "docker-1.12.1"

# Allowed time on top of the hang deadline, in seconds.
BUDGET_OVER_DEADLINE = 1.0


@dataclasses.dataclass(frozen=True)
class HangRun:
    """One timed hang run: total wall time and the in-run time from its report."""

    wall: float
    in_run: float


def hang_argv(command: list[str], deadline: float, seed: int, report: str) -> list[str]:
    """Return the argv of one single-cycle hang run of ``docker-1.12.1``."""
    return [
        *command,
        "run",
        "--target", TARGET,
        "--cycles", "1",
        "--concurrency", "1",
        "--point", "before-remove",
        "--deadline", f"{deadline:g}",
        "--metrics-port", "0",
        "--expect", f"{TARGET}=hang",
        "--seed", str(seed),
        "--quiet",
        "--report", report,
    ]  # fmt: skip


def time_process(argv: list[str]) -> float:
    """Run ``argv`` to completion and return its wall time in seconds.

    Raise ``RuntimeError`` when the process exits with a non-zero status.
    """
    started = time.perf_counter()
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited with status {completed.returncode}:"
            f" {completed.stdout}{completed.stderr}"
        )
    return wall


def run_hang(command: list[str], deadline: float, seed: int, directory: str) -> HangRun:
    """Time one hang run and check from its report that the cycle was judged a hang."""
    report_path = os.path.join(directory, "hang-report.json")
    wall = time_process(hang_argv(command, deadline, seed, report_path))
    with open(report_path) as file:
        report = json.load(file)
    hangs = report["targets"][TARGET]["outcomes"]["hang"]
    if hangs != 1:
        raise RuntimeError(f"report {report_path} shows {hangs} hangs of {TARGET}, expected 1")
    started = datetime.datetime.fromisoformat(report["started_at"])
    finished = datetime.datetime.fromisoformat(report["finished_at"])
    return HangRun(wall, (finished - started).total_seconds())


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def report(
    args: argparse.Namespace,
    machine: list[str],
    command: list[str],
    noop: list[float],
    hangs: dict[float, list[HangRun]],
) -> None:
    """Print the Markdown table of wall times and whether each deadline meets its target."""
    print(f"## Time to the first detected hang of {TARGET}\n")
    print(*machine, sep="\n")
    print(f"- repeats: {args.repeat}, seed: {args.seed}, CLI: `{' '.join(command)}`\n")
    header = ["command", "wall s median", "min", "max", "in-run s median", "rest s median"]
    print(_row([*header, "target", "met"]))
    print(_row(["---"] + ["---:"] * 6 + ["---"]))
    print(_row(["`stressor targets`", *format_spread(Spread.of(noop), 3), "-", "-", "-", "-"]))
    for deadline, runs in hangs.items():
        wall = Spread.of([run.wall for run in runs])
        in_run = Spread.of([run.in_run for run in runs])
        rest = Spread.of([run.wall - run.in_run for run in runs])
        limit = BUDGET_OVER_DEADLINE + deadline
        met = "met" if wall.median < limit else "not met"
        label = f"hang run, `--deadline {deadline:g}`"
        cells = [label, *format_spread(wall, 3), f"{in_run.median:.3f}", f"{rest.median:.3f}"]
        print(_row([*cells, f"< {limit:g} s", met]))
    print(
        "\nin-run: the report's finished_at minus started_at (the cycle, the deadline and"
        " the hang detection); rest: wall minus in-run (interpreter start-up, imports,"
        " summary, report and exit)."
    )


def _deadline_list(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid list of seconds: {text!r}") from None
    if not values or any(not value > 0 for value in values):
        raise argparse.ArgumentTypeError(f"deadlines must be more than 0 seconds: {text!r}")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--repeat", type=int, default=7, metavar="R",
        help="runs of every command; the table shows their median (default: 7)",
    )  # fmt: skip
    parser.add_argument(
        "--deadline", type=_deadline_list, default=[1.0, 0.25], metavar="D[,D...]",
        help="hang deadlines in seconds, comma-separated (default: 1,0.25)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=1, help="run seed of the hang runs (default: 1)"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    args = parse_args(argv)
    machine = describe_machine()
    command = stressor_command()
    noop: list[float] = []
    hangs: dict[float, list[HangRun]] = {deadline: [] for deadline in args.deadline}
    cases: list[float | None] = [None, *args.deadline]
    directory = tempfile.mkdtemp(prefix="stressor-bench-")
    try:
        for repeat in range(args.repeat):
            shift = repeat % len(cases)
            for case in cases[shift:] + cases[:shift]:
                if case is None:
                    noop.append(time_process([*command, "targets"]))
                else:
                    hangs[case].append(run_hang(command, case, args.seed, directory))
            print(f"repeat {repeat + 1} of {args.repeat} done", file=sys.stderr)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    report(args, machine, command, noop, hangs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
