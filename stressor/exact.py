"""Exact replays: a cycle on fake files in virtual time, the same each time it runs.

A cycle on the fake backend touches no real file and waits for no real event.
Run in virtual time with a repeatable scheduler (``stressor.backends.virtual_time``)
and in a fresh fake file system, it is a pure function of its inputs. The same
(seed, cycle, scenario) gives the same file operations, the same inotify events
in the same order and the same verdict, down to the latencies in virtual seconds.
``run_cycle_exactly`` runs one such cycle and returns the verdict with the trace
of operations and events. ``replay_exactly`` is what ``stressor replay`` runs for
a fake-backend scenario.
"""

from __future__ import annotations

import dataclasses
import hashlib

from stressor.backends import use_backend
from stressor.backends.fake import FakeBackend
from stressor.backends.fake_inotify import TraceEntry
from stressor.backends.virtual_time import run_in_virtual_time
from stressor.cycle import CycleLimits, CycleSetup, run_cycle
from stressor.results import CycleResult
from stressor.scenario import Scenario
from stressor.schedule import Schedule
from stressor.targets.base import Target

# The run directory of a replayed cycle, in its fake file system.
REPLAY_DIRECTORY = "/tmp/stressor-replay"


@dataclasses.dataclass(frozen=True)
class ExactCycle:
    """The verdict of an exactly replayed cycle and everything it did on its files.

    Attributes:
        result: the cycle's verdict and measurements, times in virtual seconds.
        trace: the file operations and queued inotify events, in order.
    """

    result: CycleResult
    trace: tuple[TraceEntry, ...]

    @property
    def events(self) -> int:
        """Return how many inotify events were queued, merged ones included."""
        return sum(1 for entry in self.trace if entry.kind.startswith("event-"))

    def digest(self) -> str:
        """Return a short hash of the trace; equal digests mean equal runs."""
        text = "\n".join(f"{entry.time!r} {entry.kind} {entry.detail}" for entry in self.trace)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def scheduling_seed(seed: int, cycle: int) -> str:
    """Return the seed of trio's scheduler for cycle ``cycle`` of the run seeded ``seed``."""
    return f"stressor-scheduler:{seed}:{cycle}"


def run_cycle_exactly(
    target: Target, schedule: Schedule, limits: CycleLimits, setup: CycleSetup
) -> ExactCycle:
    """Run one cycle on a fresh fake file system in virtual time; return verdict and trace.

    It starts its own ``trio.run``, so it cannot be called from inside one. The
    target must run in-process; an external program would see no fake file.
    """
    backend = FakeBackend(record=True)

    async def run() -> CycleResult:
        with use_backend(backend):
            backend.os.makedirs(REPLAY_DIRECTORY, 0o700, exist_ok=True)
            return await run_cycle(target, schedule, REPLAY_DIRECTORY, limits, setup)

    result = run_in_virtual_time(run, seed=scheduling_seed(schedule.seed, schedule.cycle))
    assert backend.trace is not None
    return ExactCycle(result, tuple(backend.trace.entries))


def replay_exactly(scenario: Scenario, target_name: str, cycle: int, repeat: int) -> list[str]:
    """Replay a cycle of a fake-backend scenario ``repeat`` times, each attempt from scratch.

    Prints each attempt's verdict with the digest of its trace, then whether all
    attempts were identical. Returns the findings the target's expectation does
    not tolerate, as ``replay.replay_cycle`` does.
    """
    schedule = scenario.schedule(cycle)
    limits = CycleLimits(deadline=scenario.deadline, max_wait=scenario.max_wait)
    target = scenario.target(target_name)
    expectation = scenario.expectation_for(target_name)
    tolerated = expectation.expect | expectation.allow
    faults = ", ".join(fault.describe() for fault in schedule.faults) or "none"
    print(
        f"replaying {target_name} seed {scenario.seed} cycle {cycle}"
        f" (fake files, virtual time): faults {faults}"
    )
    problems: list[str] = []
    runs: list[ExactCycle] = []
    for attempt in range(1, repeat + 1):
        run = run_cycle_exactly(target, schedule, limits, scenario.cycle_setup())
        result = run.result
        detail = f" ({result.detail})" if result.detail else ""
        print(f"attempt {attempt}: {result.outcome}{detail}")
        print(f"  trace {run.digest()}: {len(run.trace)} steps, {run.events} inotify events")
        problems += sorted(result.findings - tolerated)
        runs.append(run)
    if repeat > 1:
        same = all(run == runs[0] for run in runs)
        verdict = "identical" if same else "NOT identical (please report this as a bug)"
        print(f"{repeat} attempts: {verdict}")
    return problems
