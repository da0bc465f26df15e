"""Shared fixtures: a private directory for cycle files and a helper that runs many cycles."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Awaitable, Callable

import pytest
import trio

from stressor.cycle import CycleLimits, CycleSetup, run_cycle
from stressor.faults import FaultSpec
from stressor.hooks import HookPoint
from stressor.results import CycleResult
from stressor.schedule import make_schedule
from stressor.targets import get_target
from stressor.targets.base import Target

# Short limits keep hung cycles cheap; the targets finish in milliseconds when healthy.
TEST_LIMITS = CycleLimits(deadline=0.5, max_wait=5.0)


@dataclasses.dataclass
class Batch:
    """Results of many cycles of one target, with counts by outcome and by finding."""

    results: list[CycleResult]

    @property
    def outcomes(self) -> collections.Counter[str]:
        return collections.Counter(result.outcome for result in self.results)

    @property
    def findings(self) -> collections.Counter[str]:
        return collections.Counter(f for result in self.results for f in result.findings)


RunBatch = Callable[..., Awaitable[Batch]]


@pytest.fixture
def run_batch(tmp_path) -> RunBatch:
    """Return ``run(target, cycles, points, ...)`` that runs cycles with bounded concurrency."""

    async def run(
        target: str | Target,
        cycles: int,
        points: tuple[HookPoint, ...],
        *,
        seed: int = 1,
        lines: int = 10,
        max_gap: float = 0.0005,
        settle: float = 0.001,
        catch_up: bool = True,
        concurrency: int = 32,
        limits: CycleLimits = TEST_LIMITS,
        faults: tuple[FaultSpec, ...] = (),
        line_format: str = "docker-json",
        symlink: bool = False,
        setup: CycleSetup | None = None,
    ) -> Batch:
        follower = get_target(target) if isinstance(target, str) else target
        results: list[CycleResult] = []
        indices = iter(range(cycles))

        async def worker() -> None:
            for index in indices:
                schedule = make_schedule(
                    seed,
                    index,
                    lines=lines,
                    max_gap=max_gap,
                    catch_up=catch_up,
                    settle=settle,
                    points=points,
                    extra_faults=faults,
                )
                result = await run_cycle(
                    follower,
                    schedule,
                    str(tmp_path),
                    limits,
                    setup or CycleSetup(line_format=line_format, symlink=symlink),
                )
                results.append(result)

        async with trio.open_nursery() as nursery:
            for _ in range(min(concurrency, cycles)):
                nursery.start_soon(worker)
        return Batch(results)

    return run
