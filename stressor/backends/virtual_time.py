"""Run trio in virtual time with a repeatable scheduler, so a fake-backend cycle replays exactly.

Two things make a trio run differ from one time to the next even when every
input is the same:

- the clock. ``VirtualClock`` replaces it with virtual time that starts at 0 and,
  like ``trio.testing.MockClock(autojump_threshold=0)``, jumps to the next
  deadline whenever no task can run, so sleeps and deadlines take no real time.
  Unlike ``MockClock`` it also moves on by ``read_cost`` each time it is read.
  ``MockClock`` does not advance while tasks run, which breaks two things
  stressor relies on. Every step of a cycle's window would carry one time stamp,
  so the times could no longer show whether a fault landed before the watch was
  removed. And a loop that polls with checkpoints instead of sleeping (the Docker
  models retry a half-written line 20000 times that way) would finish in no time
  at all, before any timer fires, unlike on real files where those retries take
  a while. With a cost per read, time passes as tasks work, the
  same way in every run. (``MockClock`` is final in trio 0.35, hence a clock of
  its own rather than a subclass.)
- the scheduler. trio runs each batch of ready tasks in a random order (a shared
  ``random.Random``), and expired deadlines wake tasks in an order that depends
  on object addresses. trio has a switch, meant for Hypothesis, that sorts each
  batch by task creation order before shuffling it with that random source; with
  the switch on and the source seeded, the order no longer depends on addresses
  or on chance.

The switch and the random source are private to trio (``trio._core._run``); they
are set only for the duration of one run and restored afterwards. If a trio
release renames them, ``run_in_virtual_time`` raises instead of running a replay
that only looks exact.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import trio

T = TypeVar("T")

_SWITCH = "_ALLOW_DETERMINISTIC_SCHEDULING"
_RANDOM = "_r"

# Virtual seconds each read of the clock costs. trio's run loop reads the clock
# about twice per pass, so a checkpoint costs a few microseconds, in the range a
# real checkpoint takes; 20000 polling retries then take about 50 ms.
READ_COST = 1e-6

# Real seconds to wait for I/O when no deadline is set (deadline_to_sleep_time).
_NO_DEADLINE = 86400.0


class SchedulerNotRepeatable(RuntimeError):
    """This trio release lacks the hooks that make its scheduler repeatable."""


class VirtualClock(trio.abc.Clock):
    """Virtual time that jumps to the next deadline when all tasks wait, and moves on when read.

    Pass it to ``trio.run(..., clock=VirtualClock())``. Nothing in the run may wait
    for real I/O: the clock jumps as soon as no task can run, whatever they wait
    for. ``trio.testing.wait_all_tasks_blocked`` wakes only once no deadline is
    left to jump to.

    Args:
        read_cost: virtual seconds that each ``current_time()`` adds.
    """

    def __init__(self, read_cost: float = READ_COST) -> None:
        self._base = 0.0
        self._reads = 0
        self._read_cost = read_cost

    def __repr__(self) -> str:
        return f"<VirtualClock at {self._base + self._reads * self._read_cost:.6f} s>"

    def start_clock(self) -> None:
        """Start at virtual time 0 plus the cost of the reads."""

    def peek(self) -> float:
        """Return the virtual time without the cost of a read.

        A record of the run, such as a trace, reads the time this way, so the run
        goes the same with the record as without.
        """
        return self._base + self._reads * self._read_cost

    def current_time(self) -> float:
        """Return the virtual time, one ``read_cost`` later than the last read."""
        self._reads += 1
        return self._base + self._reads * self._read_cost

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Jump to ``deadline`` and return 0, because trio calls this only when no task can run."""
        if math.isinf(deadline):
            return _NO_DEADLINE
        now = self.current_time()
        if deadline > now:
            self._base += deadline - now
        return 0.0


@contextlib.contextmanager
def repeatable_scheduler(seed: str) -> Iterator[None]:
    """Sort and shuffle trio's ready tasks by creation order and ``seed`` inside the block.

    Raises:
        SchedulerNotRepeatable: trio's private hooks are missing.
    """
    from trio._core import _run as trio_run

    shared = getattr(trio_run, _RANDOM, None)
    if not hasattr(trio_run, _SWITCH) or not isinstance(shared, random.Random):
        raise SchedulerNotRepeatable(
            f"trio {trio.__version__} has no {_SWITCH} and {_RANDOM} in trio._core._run;"
            " exact replay needs a trio release that has them (0.35 does)"
        )
    switch = getattr(trio_run, _SWITCH)
    state = shared.getstate()
    setattr(trio_run, _SWITCH, True)
    shared.seed(seed)
    try:
        yield
    finally:
        setattr(trio_run, _SWITCH, switch)
        shared.setstate(state)


def run_in_virtual_time(async_fn: Callable[..., Awaitable[T]], *args: object, seed: str) -> T:
    """Run ``async_fn(*args)`` in a new ``trio.run`` on a ``VirtualClock``, scheduled by ``seed``.

    The same function, arguments and seed give the same run: the same tasks in
    the same order at the same virtual times. Nothing in it may wait for real
    I/O, threads or processes, which virtual time does not wait for.
    """
    with repeatable_scheduler(seed):
        return trio.run(async_fn, *args, clock=VirtualClock())
