"""Shrinking findings to the smallest schedule that still shows them."""

from __future__ import annotations

import subprocess
import sys

import trio

from stressor.cycle import CycleLimits, CycleSetup, run_cycle
from stressor.faults import FaultSpec
from stressor.hooks import HookPoint
from stressor.schedule import make_schedule
from stressor.shrink import _candidates, schedule_size, shrink
from stressor.targets import get_target

LIMITS = CycleLimits(deadline=0.2, max_wait=2.0)


def hang_schedule():
    extra = (FaultSpec("pause", (HookPoint.MID_STREAM,), delay=(0.001, 0.001)),)
    return make_schedule(
        3, 0, lines=10, max_gap=0.001, points=(HookPoint.BEFORE_REMOVE,), extra_faults=extra
    )


def test_candidates_are_smaller():
    schedule = hang_schedule()

    candidates = list(_candidates(schedule))

    assert candidates
    assert all(schedule_size(c) < schedule_size(schedule) for c in candidates)


async def test_shrink_hang_keeps_late_write(tmp_path):
    target = get_target("docker-1.12.1")
    with trio.fail_after(60):
        # Six runs per candidate: under heavy load, three runs of a smaller candidate
        # sometimes showed no hang, which left lines in the smallest schedule.
        shrunk = await shrink(
            target, hang_schedule(), "hang", LIMITS, CycleSetup(), attempts=6, budget=30
        )

    assert shrunk.steps > 0
    assert shrunk.smallest.gaps == ()
    assert [f.describe() for f in shrunk.smallest.faults] == ["late-write@before-remove"]
    with trio.fail_after(10):
        again = await run_cycle(target, shrunk.smallest, str(tmp_path), LIMITS)
    assert "hang" in again.findings


async def test_shrink_stops_at_budget():
    target = get_target("docker-1.12.1")
    started = trio.current_time()
    with trio.fail_after(20):
        shrunk = await shrink(
            target, hang_schedule(), "hang", LIMITS, CycleSetup(), attempts=1, budget=0.3
        )

    assert trio.current_time() - started < 0.3 + LIMITS.max_wait
    assert schedule_size(shrunk.smallest) <= schedule_size(shrunk.original)


async def test_shrink_without_finding_keeps_original():
    target = get_target("reference")
    schedule = hang_schedule()
    with trio.fail_after(30):
        shrunk = await shrink(target, schedule, "hang", LIMITS, CycleSetup(), attempts=1)

    assert shrunk.smallest == schedule
    assert shrunk.steps == 0


def test_replay_shrink_prints_smallest(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stressor", "replay", "--target", "docker-1.12.1", "--seed", "5",
         "--cycle", "3", "--point", "before-remove", "--deadline", "0.2", "--shrink",
         "--attempts", "1", "--shrink-budget", "20"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "attempt 1: hang" in result.stdout
    assert 'smallest: {"lines": 0, "faults": ["late-write@before-remove"]' in result.stdout
