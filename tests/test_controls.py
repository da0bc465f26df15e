"""Positive and negative controls: the built-in targets behave as their releases did."""

from __future__ import annotations

import pytest
import trio

from stressor.hooks import HookPoint

ALL_POINTS = tuple(HookPoint)


async def test_docker_1_12_1_hangs_on_late_write_before_remove(run_batch):
    with trio.fail_after(120):
        batch = await run_batch("docker-1.12.1", 200, (HookPoint.BEFORE_REMOVE,), concurrency=64)

    assert len(batch.results) == 200
    assert batch.findings["hang"] >= 180
    assert all(result.window_hit for result in batch.results)


@pytest.mark.slow
async def test_docker_1_13_0_never_hangs(run_batch):
    with trio.fail_after(300):
        batch = await run_batch("docker-1.13.0", 2000, ALL_POINTS, concurrency=48)

    assert len(batch.results) == 2000
    assert batch.findings["hang"] == 0
    assert batch.findings["crash"] == 0


@pytest.mark.slow
async def test_reference_has_no_finding(run_batch):
    with trio.fail_after(300):
        batch = await run_batch("reference", 2000, ALL_POINTS, concurrency=48)

    assert len(batch.results) == 2000
    assert batch.outcomes == {"ok": 2000}
    assert sum(result.window_hit for result in batch.results) > 0


@pytest.mark.slow
async def test_polling_has_no_finding(run_batch):
    with trio.fail_after(300):
        batch = await run_batch("polling", 500, ALL_POINTS, concurrency=48)

    assert len(batch.results) == 500
    assert batch.outcomes == {"ok": 500}


async def test_docker_1_13_0_delivers_write_before_remove(run_batch):
    with trio.fail_after(60):
        batch = await run_batch("docker-1.13.0", 100, (HookPoint.BEFORE_REMOVE,))

    assert batch.outcomes == {"ok": 100}
    assert all(result.lines_read == 11 for result in batch.results)


@pytest.mark.parametrize("target", ["docker-1.12.1", "docker-1.13.0"])
async def test_docker_loses_write_just_before_close(run_batch, target):
    # The settle pause lets the follower consume the events of the writer's own
    # lines, so the only late event is the fault's.
    with trio.fail_after(60):
        batch = await run_batch(target, 50, (HookPoint.AFTER_REMOVE,), settle=0.02)

    finished = [result for result in batch.results if "hang" not in result.findings]
    assert finished
    for result in finished:
        assert result.lines_written == 11
        assert result.lines_lost == 1
        assert result.lines_read == 10
        assert result.findings == {"lost"}


async def test_reference_delivers_write_just_before_close(run_batch):
    with trio.fail_after(60):
        batch = await run_batch("reference", 50, (HookPoint.AFTER_REMOVE,), settle=0.02)

    assert batch.outcomes == {"ok": 50}
    assert all(result.lines_read == 11 for result in batch.results)


async def test_same_seed_gives_same_docker_verdicts(run_batch):
    # One cycle at a time, so only the schedule and the kernel's event order matter.
    with trio.fail_after(60):
        first = await run_batch("docker-1.12.1", 20, ALL_POINTS, seed=5, concurrency=1, settle=0.02)
        second = await run_batch(
            "docker-1.12.1", 20, ALL_POINTS, seed=5, concurrency=1, settle=0.02
        )

    assert [r.faults for r in first.results] == [r.faults for r in second.results]
    assert [r.findings for r in first.results] == [r.findings for r in second.results]
