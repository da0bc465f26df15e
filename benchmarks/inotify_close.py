"""Measure how long ``close(2)`` of an inotify descriptor takes, depending on its watch.

A reference cycle, like the plain loop of ``cycle_rate.py``, removes its watch with
``inotify_rm_watch`` and then closes the inotify descriptor. This script times that
close in four cases, each on a fresh instance watching one file:

- the instance never had a watch;
- the watch is still in place when the descriptor is closed;
- the watch was removed just before the close;
- the watch was removed, then the script slept ``--pause`` seconds before the close.

It prints a Markdown table of the mean, median and maximum close time per case. Only the
``close`` call is timed.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence

from bench_support import describe_machine

# Values from <sys/inotify.h>. The mask is the one the stressor's watchers use for a file.
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
WATCH_MASK = 0x00000FC6

CASES = ("no watch", "watch in place", "watch removed just before", "watch removed, then pause")


def _load_libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


def _checked(result: int, call: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{call} failed: {os.strerror(code)}")
    return result


def time_close(libc: ctypes.CDLL, path: bytes, case: str, pause: float) -> float:
    """Set up one inotify instance for ``case``, close it and return the close time in seconds."""
    fd = _checked(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
    if case != "no watch":
        wd = _checked(libc.inotify_add_watch(fd, path, WATCH_MASK), "inotify_add_watch")
        if case != "watch in place":
            _checked(libc.inotify_rm_watch(fd, wd), "inotify_rm_watch")
        if case == "watch removed, then pause":
            time.sleep(pause)
    started = time.perf_counter()
    os.close(fd)
    return time.perf_counter() - started


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--closes", type=int, default=300, metavar="N",
        help="closes timed per case (default: 300)",
    )  # fmt: skip
    parser.add_argument(
        "--pause", type=float, default=0.01, metavar="SECONDS",
        help="sleep between inotify_rm_watch and close in the last case (default: 0.01)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.closes < 1 or args.pause < 0:
        parser.error("--closes must be 1 or more and --pause 0 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Time the closes, interleaving the cases, and print the table."""
    args = parse_args(argv)
    machine = describe_machine()
    libc = _load_libc()
    times: dict[str, list[float]] = {case: [] for case in CASES}
    directory = tempfile.mkdtemp(prefix="stressor-bench-")
    try:
        path = os.path.join(directory, "watched.log")
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        for _ in range(args.closes):
            for case in CASES:
                times[case].append(time_close(libc, os.fsencode(path), case, args.pause))
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    print("## close(2) of an inotify descriptor\n")
    print(*machine, sep="\n")
    print(f"- closes per case: {args.closes}, pause: {args.pause:g} s\n")
    print("| case | mean ms | median ms | max ms |")
    print("| --- | ---: | ---: | ---: |")
    for case, values in times.items():
        label = f"watch removed, then {args.pause:g} s pause" if "pause" in case else case
        mean = 1000 * statistics.fmean(values)
        median = 1000 * statistics.median(values)
        print(f"| {label} | {mean:.3f} | {median:.3f} | {1000 * max(values):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
