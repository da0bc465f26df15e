"""Helpers shared by the benchmark scripts: machine description, spreads, the CLI command."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence

import trio

import stressor


@dataclasses.dataclass(frozen=True)
class Spread:
    """Median, minimum and maximum of repeated measurements."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """Return the median, minimum and maximum of ``values``, which must not be empty."""
        return cls(statistics.median(values), min(values), max(values))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total() -> str:
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemTotal:"):
                    kib = int(line.split()[1])
                    return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _stressor_revision() -> str:
    """Return the stressor version and, in a git checkout, its commit and whether it was edited."""
    package_dir = os.path.dirname(os.path.abspath(stressor.__file__))
    text = f"stressor {stressor.__version__}"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=package_dir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            cwd=package_dir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return text
    edited = ", with uncommitted changes in stressor/" if changes else ""
    return f"{text}, commit {commit}{edited}"


def describe_machine() -> list[str]:
    """Return Markdown list items naming the machine, the software versions, the date and load."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- date: {now}",
        f"- CPUs: {os.cpu_count()} ({_cpu_model()})",
        f"- memory: {_memory_total()}",
        f"- kernel: {platform.release()}",
        f"- Python: {platform.python_version()}, trio {trio.__version__}",
        f"- code: {_stressor_revision()}",
        f"- load average at start: {' '.join(f'{value:.2f}' for value in os.getloadavg())}",
    ]


def stressor_command() -> list[str]:
    """Return the argv prefix that starts the ``stressor`` CLI of this interpreter's environment.

    The console script installed next to the interpreter is preferred because that is what
    users run; ``python -m stressor`` is the fallback when it is missing.
    """
    script = shutil.which("stressor", path=os.path.dirname(sys.executable))
    if script is not None:
        return [script]
    return [sys.executable, "-m", "stressor"]


def format_spread(spread: Spread, digits: int) -> tuple[str, str, str]:
    """Format a spread as three table cells: median, min and max."""
    return (
        f"{spread.median:.{digits}f}",
        f"{spread.low:.{digits}f}",
        f"{spread.high:.{digits}f}",
    )
