"""Measure cycles per second of the reference target against a plain system-call loop.

Each repeat runs, in one process and in a rotating order:

- the plain loop: per cycle, create a file, ``inotify_init1`` and ``inotify_add_watch``,
  write the lines, read the events and the lines, ``inotify_rm_watch``, close and
  unlink. It makes the system calls of a reference cycle with no trio and no checks.
- the stressor engine (``stressor.engine.run_stress`` with a ``Scenario`` and a
  ``RunRecord``) on the ``reference`` target at each concurrency, timed in-process
  around ``trio.run``, so interpreter start-up is excluded.
- one ``stressor run`` of a single cycle through the CLI, whose wall time is the fixed
  cost of a CLI run (start-up, one cycle, report).

The result is a Markdown table of median, minimum and maximum over the repeats, and the
ratio stressor/plain per concurrency.

Concurrency 256 needs more inotify instances than the usual default of
``fs.inotify.max_user_instances`` (128). When the limit is too low and the script runs
as root, it raises the limit for the duration of the run and restores the old value at
the end. Without root it exits and names the sysctl to set.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from types import FrameType

import trio
from bench_support import Spread, describe_machine, format_spread, stressor_command

from stressor.engine import run_stress
from stressor.record import RunRecord
from stressor.scenario import Scenario

INSTANCES_LIMIT_PATH = "/proc/sys/fs/inotify/max_user_instances"

# Instances needed beyond the largest concurrency, because the engine keeps a few spare
# and other processes of the same user (editors, test runs) hold some as well.
INSTANCES_HEADROOM = 64

# Flags of inotify_init1 and the watch mask, with values from <sys/inotify.h>. The mask
# is the one the stressor's watchers and fsnotify use for a file: IN_MODIFY, IN_ATTRIB,
# IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE, IN_DELETE_SELF and IN_MOVE_SELF.
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
WATCH_MASK = 0x00000FC6

READ_SIZE = 64 * 1024

# A line of the same shape and length as the stressor's docker json-file lines.
LINE_TEMPLATE = (
    '{{"log":"stressor w=1 seq={seq} t=12.000312\\n","stream":"stdout",'
    '"time":"2026-01-01T00:00:00.000000Z"}}\n'
)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One timed run: wall and CPU seconds for a number of cycles."""

    cycles: int
    wall: float
    cpu: float
    findings: int = 0

    @property
    def rate(self) -> float:
        """Cycles per second of wall time."""
        return self.cycles / self.wall

    @property
    def cpu_ms_per_cycle(self) -> float:
        """Process CPU time (user plus system, all threads) per cycle, in milliseconds."""
        return 1000 * self.cpu / self.cycles

    @property
    def off_cpu_ms_per_cycle(self) -> float:
        """Wall time minus process CPU time per cycle, in milliseconds.

        A positive value is time the process spent blocked or waiting for a CPU. It turns
        negative when worker threads ran in parallel with the main thread, such as the
        threads in which the stressor closes inotify descriptors.
        """
        return 1000 * (self.wall - self.cpu) / self.cycles


class _Libc:
    """The three inotify calls through ctypes, raising ``OSError`` on failure."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self._libc = libc

    @staticmethod
    def _check(result: int, call: str) -> int:
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"{call} failed: {os.strerror(code)}")
        return result

    def init(self) -> int:
        """Call ``inotify_init1(IN_NONBLOCK | IN_CLOEXEC)`` and return the descriptor."""
        return self._check(self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")

    def add_watch(self, fd: int, path: bytes) -> int:
        """Call ``inotify_add_watch`` with the fsnotify mask and return the watch descriptor."""
        return self._check(self._libc.inotify_add_watch(fd, path, WATCH_MASK), "add_watch")

    def rm_watch(self, fd: int, wd: int) -> None:
        """Call ``inotify_rm_watch``."""
        self._check(self._libc.inotify_rm_watch(fd, wd), "inotify_rm_watch")


def run_plain(directory: str, cycles: int, lines: int, libc: _Libc) -> Measurement:
    """Run ``cycles`` plain cycles in ``directory`` and time them.

    The order of the calls follows a reference cycle: the follower closes its inotify
    descriptor, then its read descriptor, then the writer's descriptor is closed and
    the file unlinked.
    """
    payload = [LINE_TEMPLATE.format(seq=seq).encode() for seq in range(1, lines + 1)]
    expected = sum(len(line) for line in payload) * cycles
    received = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    for index in range(cycles):
        path = os.fsencode(os.path.join(directory, f"plain-{index}.log"))
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        write_fd = os.open(path, flags, 0o600)
        read_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        inotify_fd = libc.init()
        wd = libc.add_watch(inotify_fd, path)
        for line in payload:
            os.write(write_fd, line)
        os.read(inotify_fd, READ_SIZE)
        while chunk := os.read(read_fd, READ_SIZE):
            received += len(chunk)
        libc.rm_watch(inotify_fd, wd)
        os.close(inotify_fd)
        os.close(read_fd)
        os.close(write_fd)
        os.unlink(path)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    if received != expected:
        raise RuntimeError(f"plain loop read {received} bytes, expected {expected}")
    return Measurement(cycles, wall, cpu)


def run_engine(cycles: int, concurrency: int, lines: int, seed: int) -> Measurement:
    """Run the engine on the reference target in a fresh ``trio.run`` and time it.

    The scenario matches ``stressor run --target reference --max-gap 0 --settle 0
    --metrics-port 0``. Its default fault, one late write per cycle, stays on, so each
    cycle writes one line more than ``lines``.
    """
    scenario = Scenario(
        targets=("reference",),
        cycles=cycles,
        duration=None,
        concurrency=concurrency,
        seed=seed,
        lines=lines,
        max_gap=0.0,
        settle=0.0,
        metrics_port=0,
    )
    record = RunRecord(scenario)
    started = time.perf_counter()
    cpu_started = time.process_time()
    trio.run(run_stress, scenario, record)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    if len(record.results) != cycles:
        raise RuntimeError(f"engine finished {len(record.results)} of {cycles} cycles")
    findings = sum(1 for result in record.results if result.findings)
    return Measurement(cycles, wall, cpu, findings)


def run_cli_once(command: list[str], directory: str, lines: int, seed: int) -> float:
    """Run one reference cycle through the CLI and return its wall time in seconds."""
    report = os.path.join(directory, "cli-report.json")
    argv = [
        *command,
        "run",
        "--target", "reference",
        "--cycles", "1",
        "--concurrency", "1",
        "--lines", str(lines),
        "--max-gap", "0",
        "--settle", "0",
        "--metrics-port", "0",
        "--seed", str(seed),
        "--quiet",
        "--report", report,
    ]  # fmt: skip
    started = time.perf_counter()
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited with status {completed.returncode}: {completed.stderr}"
        )
    return wall


def _read_limit() -> int | None:
    try:
        with open(INSTANCES_LIMIT_PATH) as file:
            return int(file.read())
    except (OSError, ValueError):
        return None


def _write_limit(value: int) -> None:
    with open(INSTANCES_LIMIT_PATH, "w") as file:
        file.write(f"{value}\n")


def _raise_system_exit(signal_number: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signal_number)


@contextlib.contextmanager
def inotify_instances(concurrency: int) -> Iterator[None]:
    """Make sure ``concurrency`` followers can each open an inotify instance.

    When ``fs.inotify.max_user_instances`` is too low, raise it for the duration of the
    block when running as root, and restore the old value on exit (also on SIGINT and
    SIGTERM). Without root, exit with a message naming the sysctl to set.
    """
    limit = _read_limit()
    needed = concurrency + INSTANCES_HEADROOM
    if limit is None or limit >= needed:
        yield
        return

    raised_limit = max(1024, 2 * concurrency)
    if os.geteuid() != 0:
        sys.exit(
            f"cycle_rate: fs.inotify.max_user_instances is {limit}, but concurrency"
            f" {concurrency} needs at least {needed}. Raise it first, for example"
            f" `sudo sysctl fs.inotify.max_user_instances={raised_limit}`, or pass a lower"
            " --concurrency."
        )

    _write_limit(raised_limit)
    print(
        f"Raised fs.inotify.max_user_instances from {limit} to {raised_limit} for this run;"
        " the old value is restored at the end.",
        file=sys.stderr,
    )
    previous_handler = signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        current = _read_limit()
        if current == raised_limit:
            _write_limit(limit)
            print(f"Restored fs.inotify.max_user_instances to {limit}.", file=sys.stderr)
        else:
            # Another process changed the limit during the run, so its value is kept.
            print(
                f"fs.inotify.max_user_instances is now {current}, not the {raised_limit} set"
                f" here; left unchanged (it was {limit} before the run).",
                file=sys.stderr,
            )


@dataclasses.dataclass
class Results:
    """Every measurement of a benchmark run, by case."""

    plain: list[Measurement] = dataclasses.field(default_factory=list)
    engine: dict[int, list[Measurement]] = dataclasses.field(default_factory=dict)
    cli: list[float] = dataclasses.field(default_factory=list)


def measure(args: argparse.Namespace, directory: str) -> Results:
    """Run every case ``args.repeat`` times, rotating their order from one repeat to the next."""
    libc = _Libc()
    command = stressor_command()
    results = Results(engine={concurrency: [] for concurrency in args.concurrency})
    cases: list[int | str] = ["plain", *args.concurrency, "cli"]
    for repeat in range(args.repeat):
        shift = repeat % len(cases)
        for case in cases[shift:] + cases[:shift]:
            if case == "plain":
                results.plain.append(run_plain(directory, args.cycles, args.lines, libc))
            elif case == "cli":
                results.cli.append(run_cli_once(command, directory, args.lines, args.seed))
            else:
                assert isinstance(case, int)
                measurement = run_engine(args.cycles, case, args.lines, args.seed)
                results.engine[case].append(measurement)
        print(f"repeat {repeat + 1} of {args.repeat} done", file=sys.stderr)
    return results


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def report(args: argparse.Namespace, machine: list[str], results: Results) -> None:
    """Print the Markdown tables of rates, CPU time per cycle and ratios."""
    print("## Cycle rate: stressor engine (reference target) against a plain loop\n")
    print(*machine, sep="\n")
    print(
        f"- cycles per measurement: {args.cycles}, lines per cycle: {args.lines},"
        f" repeats: {args.repeat}, seed: {args.seed}\n"
    )
    header = ["case", "cycles/s median", "min", "max", "CPU ms/cycle", "off-CPU ms/cycle"]
    print(_row([*header, "findings"]))
    print(_row(["---"] + ["---:"] * 6))
    cases = [("plain loop", results.plain, "-")]
    for concurrency, runs in results.engine.items():
        findings = str(sum(m.findings for m in runs))
        cases.append((f"stressor, concurrency {concurrency}", runs, findings))
    for label, runs, findings in cases:
        rate = Spread.of([m.rate for m in runs])
        cpu = Spread.of([m.cpu_ms_per_cycle for m in runs])
        off_cpu = Spread.of([m.off_cpu_ms_per_cycle for m in runs])
        cells = [label, *format_spread(rate, 0), f"{cpu.median:.3f}", f"{off_cpu.median:.3f}"]
        print(_row([*cells, findings]))

    plain_rate = Spread.of([m.rate for m in results.plain])
    plain_cpu = Spread.of([m.cpu_ms_per_cycle for m in results.plain])

    header = ["concurrency", "rate ratio stressor/plain", "paired min", "paired max"]
    print("\n" + _row([*header, "CPU ratio stressor/plain", "ratio >= 0.5"]))
    print(_row(["---:"] * 5 + ["---"]))
    for concurrency, runs in results.engine.items():
        ratio = Spread.of([m.rate for m in runs]).median / plain_rate.median
        paired = Spread.of([s.rate / p.rate for s, p in zip(runs, results.plain, strict=True)])
        cpu_ratio = Spread.of([m.cpu_ms_per_cycle for m in runs]).median / plain_cpu.median
        met = "met" if ratio >= 0.5 else "not met"
        cells = [str(concurrency), f"{ratio:.2f}", f"{paired.low:.2f}", f"{paired.high:.2f}"]
        print(_row([*cells, f"{cpu_ratio:.1f}", met]))

    cli = Spread.of(results.cli)
    print(
        "\nRate ratio: median stressor rate / median plain rate; paired: the ratio within each"
        " repeat. CPU and off-CPU columns are medians. CPU time counts all threads, so off-CPU"
        " (wall minus CPU) is negative when worker threads overlapped the main thread."
        " CPU ratio: median CPU time per cycle, stressor / plain (higher means the stressor"
        " spends more CPU per cycle)."
    )
    print(
        f"\nCLI fixed cost (`stressor run`, one reference cycle, wall time, s):"
        f" median {cli.median:.3f}, min {cli.low:.3f}, max {cli.high:.3f}"
    )
    if any(m.findings for runs in results.engine.values() for m in runs):
        print("\nWARNING: the reference target had findings; the rates above include them.")


def _concurrency_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid list of integers: {text!r}") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"concurrencies must be 1 or more: {text!r}")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--cycles", type=int, default=1500, metavar="N",
        help="cycles per measurement (default: 1500)",
    )  # fmt: skip
    parser.add_argument(
        "--repeat", type=int, default=5, metavar="R",
        help="repeats of every case; the tables show their median (default: 5)",
    )  # fmt: skip
    parser.add_argument(
        "--concurrency", type=_concurrency_list, default=[1, 16, 256], metavar="K[,K...]",
        help="engine concurrencies, comma-separated (default: 1,16,256)",
    )  # fmt: skip
    parser.add_argument(
        "--lines", type=int, default=10, metavar="N", help="lines per cycle (default: 10)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="run seed of the engine runs (default: 1)"
    )
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.repeat < 1 or args.lines < 1:
        parser.error("--cycles, --repeat and --lines must be 1 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    args = parse_args(argv)
    machine = describe_machine()
    with inotify_instances(max(args.concurrency)):
        directory = tempfile.mkdtemp(prefix="stressor-bench-")
        try:
            results = measure(args, directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    report(args, machine, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
