"""The fault catalogue on real files: the reference passes every fault, the models do not."""

from __future__ import annotations

import pytest
import trio

from stressor.faults import FaultSpec
from stressor.hooks import HookPoint
from stressor.rotations import ROTATION_METHODS

EVERY_POINT = (
    HookPoint.BEFORE_START,
    HookPoint.MID_STREAM,
    HookPoint.AFTER_EXIT,
    HookPoint.BEFORE_REMOVE,
    HookPoint.AFTER_REMOVE,
)

CATALOGUE = {
    "late-write": FaultSpec("late-write", EVERY_POINT),
    "late-write-delayed": FaultSpec("late-write", EVERY_POINT, delay=(1e-6, 0.01)),
    "partial-completed": FaultSpec("partial-line", EVERY_POINT, delay=(1e-6, 0.005)),
    "partial-never": FaultSpec("partial-line", EVERY_POINT, complete=False),
    "burst": FaultSpec("burst", EVERY_POINT, lines=200),
    "pause": FaultSpec("pause", EVERY_POINT, delay=(1e-4, 0.02)),
    **{
        f"rotate-{method}": FaultSpec("rotate", EVERY_POINT, method=method)
        for method in ROTATION_METHODS
    },
    "rotate-chain-twice": FaultSpec("rotate", EVERY_POINT, method="chain", count=2),
}


@pytest.mark.parametrize("name", list(CATALOGUE))
async def test_reference_passes_fault(run_batch, name):
    spec = CATALOGUE[name]
    symlink = spec.method == "symlink-swap"
    with trio.fail_after(120):
        batch = await run_batch("reference", 100, (), faults=(spec,), symlink=symlink)

    assert batch.findings == {}, [r for r in batch.results if r.findings][:3]
    assert all(result.faults for result in batch.results)


@pytest.mark.parametrize("line_format", ["docker-json", "cri", "plain"])
async def test_reference_passes_every_format(run_batch, line_format):
    spec = FaultSpec("rotate", EVERY_POINT, method="rename-create")
    with trio.fail_after(60):
        batch = await run_batch(
            "reference", 50, tuple(HookPoint)[3:], faults=(spec,), line_format=line_format
        )

    assert batch.outcomes == {"ok": 50}


async def test_reference_follows_symlink_target_rotation(run_batch):
    spec = FaultSpec("rotate", (HookPoint.MID_STREAM,), method="rename-create")
    with trio.fail_after(60):
        batch = await run_batch("reference", 50, (), faults=(spec,), symlink=True)

    assert batch.outcomes == {"ok": 50}
    assert all(result.lines_read == 10 for result in batch.results)


async def test_truncated_lines_are_indeterminate(run_batch):
    # No catch-up: the writer truncates right after its lines, before the reader
    # may have read them.
    spec = FaultSpec("rotate", (HookPoint.AFTER_EXIT,), method="truncate")
    with trio.fail_after(60):
        batch = await run_batch("reference", 50, (), faults=(spec,), catch_up=False, settle=0)

    assert batch.findings == {}
    assert sum(result.lines_indeterminate for result in batch.results) > 0


DOUBLE_ROTATION = FaultSpec("rotate", (HookPoint.AFTER_EXIT,), method="chain", count=2)


async def test_docker_1_12_1_hangs_on_double_rotation(run_batch):
    with trio.fail_after(120):
        batch = await run_batch("docker-1.12.1", 100, (), faults=(DOUBLE_ROTATION,))

    assert batch.findings["hang"] >= 90


async def test_docker_1_13_0_hangs_on_double_rotation(run_batch):
    with trio.fail_after(120):
        batch = await run_batch("docker-1.13.0", 100, (), faults=(DOUBLE_ROTATION,))

    assert batch.findings["hang"] >= 10


async def test_docker_17_12_0_survives_double_rotation(run_batch):
    with trio.fail_after(120):
        batch = await run_batch("docker-17.12.0", 300, (), faults=(DOUBLE_ROTATION,))

    assert batch.findings["hang"] == 0


async def test_docker_17_12_0_survives_late_writes(run_batch):
    with trio.fail_after(120):
        batch = await run_batch("docker-17.12.0", 300, tuple(HookPoint)[3:])

    assert batch.findings["hang"] == 0
