"""The engine: run many cycles at once in one trio nursery, bounded in count or time."""

from __future__ import annotations

import contextlib
import datetime
import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import trio

from stressor.backends import make_backend, use_backend
from stressor.cycle import CycleLimits, run_cycle
from stressor.leaks import count_user_inotify_instances
from stressor.record import RunRecord
from stressor.replay import replay_command
from stressor.results import CycleResult
from stressor.scenario import ConfigError, Scenario
from stressor.targets.base import Target, open_target

log = logging.getLogger(__name__)


class RunObserver(Protocol):
    """Receives cycle starts and ends while a run goes on (metrics, progress)."""

    def cycle_started(self, target: str) -> None: ...

    def cycle_finished(self, result: CycleResult) -> None: ...

    def cycle_abandoned(self, target: str) -> None: ...


INOTIFY_INSTANCES_LIMIT = "/proc/sys/fs/inotify/max_user_instances"

# Instances kept free for the rest of the machine (editors, system services).
INOTIFY_INSTANCES_SPARE = 8


def check_inotify_capacity(concurrency: int) -> None:
    """Raise ``ConfigError`` when ``concurrency`` followers could not each get an inotify instance.

    Each follower built on inotify opens its own instance, as ``docker logs -f`` does,
    and the kernel caps instances per user, counting those of the user's other
    processes. Hitting that cap mid-run would make healthy followers fail, so the run
    is rejected before it starts. Other programs can still take instances later: a
    cycle whose follower then fails to get one stops the run (``ResourceLimitError``).
    """
    try:
        with open(INOTIFY_INSTANCES_LIMIT) as file:
            limit = int(file.read())
    except (OSError, ValueError):
        return
    in_use = count_user_inotify_instances()
    available = limit - in_use - INOTIFY_INSTANCES_SPARE
    if concurrency > available:
        raise ConfigError(
            "--concurrency",
            concurrency,
            f"at most {max(available, 0)} followers can each open an inotify instance"
            f" (fs.inotify.max_user_instances = {limit}, {in_use} in use by this user);"
            " lower --concurrency, stop other inotify users, or raise the limit, e.g."
            f" sysctl fs.inotify.max_user_instances={max(1024, 2 * concurrency)}",
        )


def _jobs(scenario: Scenario, indices: Iterable[int] | None) -> Iterator[tuple[str, int]]:
    """Yield (target, cycle index) pairs, all targets at each index before the next."""
    if indices is None:
        indices = range(scenario.cycles) if scenario.cycles is not None else itertools.count()
    for index in indices:
        for name in scenario.targets:
            yield name, index


# The run directory of a fake-backend run, inside the run's fake file system.
FAKE_RUN_DIRECTORY = "/tmp/stressor-run"


async def run_stress(
    scenario: Scenario,
    record: RunRecord,
    observers: Sequence[RunObserver] = (),
    *,
    cycle_indices: Iterable[int] | None = None,
    scenario_path: str | None = None,
) -> None:
    """Run the scenario's cycles, appending each result to ``record`` as it finishes.

    Cycles run in a private temporary directory (mode 0700) that is removed at the
    end, also when the run is cancelled. A cancelled run leaves the cycles that
    finished in ``record`` and reports the others to ``observers`` as abandoned.
    On the fake backend the directory is in a fake file system that all the run's
    cycles share, and no real file is touched.

    Args:
        cycle_indices: run only these cycles of each target, such as one cycle to
            replay. They must be distinct, because each cycle's file is named after
            its index. The default is the scenario's cycles.

    Raises:
        OSError: the temporary directory could not be created.
    """
    if scenario.backend == "real":
        check_inotify_capacity(scenario.concurrency)
    limits = CycleLimits(deadline=scenario.deadline, max_wait=scenario.max_wait)
    jobs = _jobs(scenario, cycle_indices)
    stop_at = None
    if scenario.duration is not None:
        stop_at = trio.current_time() + scenario.duration
    # An invalid TMPDIR fails the run instead of falling back to /tmp, as
    # tempfile.gettempdir() would, because that would change the file system under test.
    backend = make_backend(scenario.backend)
    if scenario.backend == "fake":
        directory = FAKE_RUN_DIRECTORY
        backend.os.makedirs(directory, 0o700, exist_ok=True)
    else:
        directory = tempfile.mkdtemp(prefix="stressor-", dir=os.environ.get("TMPDIR") or None)
    log.info(
        "run started: seed %d, targets %s, concurrency %d, directory %s",
        scenario.seed,
        ",".join(scenario.targets),
        scenario.concurrency,
        directory,
    )

    async def worker(followers: dict[str, Target]) -> None:
        for name, index in jobs:
            if stop_at is not None and trio.current_time() >= stop_at:
                return
            await _one_cycle(
                scenario,
                followers[name],
                index,
                directory,
                limits,
                record,
                observers,
                scenario_path,
            )

    try:
        with use_backend(backend):
            async with contextlib.AsyncExitStack() as stack:
                # A long-lived program starts here once and serves every cycle.
                followers = {
                    name: await stack.enter_async_context(
                        open_target(scenario.target(name), directory)
                    )
                    for name in scenario.targets
                }
                async with trio.open_nursery() as nursery:
                    for _ in range(scenario.concurrency):
                        nursery.start_soon(worker, followers)
    finally:
        if scenario.backend == "real":
            shutil.rmtree(directory, ignore_errors=True)
        record.finished_at = datetime.datetime.now(datetime.UTC)
        log.info("run finished: seed %d, %d cycles", scenario.seed, record.finished_cycles)


async def _one_cycle(
    scenario: Scenario,
    target: Target,
    index: int,
    directory: str,
    limits: CycleLimits,
    record: RunRecord,
    observers: Sequence[RunObserver],
    scenario_path: str | None,
) -> None:
    name = target.name
    schedule = scenario.schedule(index)
    for observer in observers:
        observer.cycle_started(name)
    try:
        result = await run_cycle(
            target,
            schedule,
            directory,
            limits,
            scenario.cycle_setup(),
        )
    except BaseException:
        for observer in observers:
            observer.cycle_abandoned(name)
        raise

    record.finished_cycles += 1
    if record.keep_results:
        record.results.append(result)
    if result.findings:
        faults = ",".join(result.faults) or "none"
        log.info(
            "finding: target %s, seed %d, cycle %d, outcome %s, faults %s%s; replay: %s",
            name,
            scenario.seed,
            index,
            result.outcome,
            faults,
            f": {result.detail}" if result.detail else "",
            replay_command(scenario, name, scenario.seed, index, scenario_path),
            extra={"repeat_key": (name, result.outcome, faults)},
        )
    for observer in observers:
        observer.cycle_finished(result)
