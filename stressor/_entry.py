"""The console entry point: a Ctrl-C while the command line loads exits quietly."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _exit_interrupted(number: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + number)


def main() -> int:
    """Load the command line with SIGINT ending the process, then run it."""
    signal.signal(signal.SIGINT, _exit_interrupted)
    from stressor.cli import main as run_command_line

    # trio takes over SIGINT only from Python's default handler, so put it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_command_line()
    except KeyboardInterrupt:
        print("stressor: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
