"""Cycles against small followers with known faults: every verdict, and no cycle hangs."""

from __future__ import annotations

import errno
import os

import pytest
import trio

from stressor.cycle import CycleLimits, ResourceLimitError, run_cycle
from stressor.faults import FaultSpec
from stressor.hooks import HookPoint
from stressor.schedule import make_schedule
from stressor.targets import get_target
from stressor.targets.base import FollowContext, LineReader

LIMITS = CycleLimits(deadline=0.3, max_wait=2.0)


class Follower:
    """A small follower: polls the file every millisecond until the writer is done."""

    name = "test-follower"
    description = "test follower"

    async def follow(self, ctx: FollowContext) -> None:
        fd = os.open(ctx.path, os.O_RDONLY)
        try:
            ctx.ready()
            reader = LineReader(fd)
            while not ctx.writer_done.is_closed():
                self.deliver(ctx, reader.read_lines())
                await trio.sleep(0.001)
            await ctx.hooks.fire(HookPoint.BEFORE_REMOVE)
            await ctx.hooks.fire(HookPoint.AFTER_REMOVE)
            self.deliver(ctx, reader.read_lines())
        finally:
            os.close(fd)

    def deliver(self, ctx: FollowContext, lines: list[bytes]) -> None:
        for line in lines:
            ctx.deliver(line)


class Stuck(Follower):
    async def follow(self, ctx: FollowContext) -> None:
        ctx.ready()
        await trio.sleep_forever()


class NeverReady(Follower):
    async def follow(self, ctx: FollowContext) -> None:
        await trio.sleep_forever()


class Busy(Follower):
    """Keeps reporting progress but never returns: a livelock."""

    async def follow(self, ctx: FollowContext) -> None:
        ctx.ready()
        while True:
            ctx.hooks.advance()
            await trio.sleep(0.01)


class Crashing(Follower):
    async def follow(self, ctx: FollowContext) -> None:
        ctx.ready()
        raise RuntimeError("follower bug")


class SkipsSecond(Follower):
    def deliver(self, ctx: FollowContext, lines: list[bytes]) -> None:
        for line in lines:
            if b"seq=2 " not in line:
                ctx.deliver(line)


class Doubles(Follower):
    def deliver(self, ctx: FollowContext, lines: list[bytes]) -> None:
        for line in lines:
            ctx.deliver(line)
            ctx.deliver(line)


class HoldsFirst(Follower):
    """Delivers the first line last."""

    async def follow(self, ctx: FollowContext) -> None:
        held: list[bytes] = []

        def deliver(line: bytes) -> None:
            if held or b"seq=1 " not in line:
                original(line)
            else:
                held.append(line)

        original = ctx.deliver
        ctx.deliver = deliver
        await super().follow(ctx)
        for line in held:
            original(line)


class Tears(Follower):
    def deliver(self, ctx: FollowContext, lines: list[bytes]) -> None:
        for line in lines:
            ctx.deliver(line[: len(line) // 2] + b"\n")


class StopsWithoutDrain(Follower):
    """Returns as soon as the writer is done, without reading the file once more."""

    async def follow(self, ctx: FollowContext) -> None:
        fd = os.open(ctx.path, os.O_RDONLY)
        try:
            ctx.ready()
            reader = LineReader(fd)
            while not ctx.writer_done.is_closed():
                self.deliver(ctx, reader.read_lines())
                await trio.sleep(0.001)
        finally:
            os.close(fd)


async def one_cycle(target, tmp_path, *, points=(HookPoint.BEFORE_REMOVE,), settle=0.0):
    schedule = make_schedule(3, 0, lines=5, max_gap=0.001, settle=settle, points=points)
    with trio.fail_after(10):
        return await run_cycle(target, schedule, str(tmp_path), LIMITS)


async def test_cycle_ok(tmp_path):
    result = await one_cycle(Follower(), tmp_path)

    assert result.outcome == "ok"
    assert result.lines_written == 6
    assert result.lines_read == 6
    assert result.window_hit
    assert result.exit_latency is not None
    assert len(result.delivery_latencies) == 6


async def test_cycle_removes_its_file(tmp_path):
    await one_cycle(Follower(), tmp_path)

    assert os.listdir(tmp_path) == []


async def test_cycle_hang_is_cancelled(tmp_path):
    started = trio.current_time()
    result = await one_cycle(Stuck(), tmp_path)

    assert result.outcome == "hang"
    assert result.exit_latency is None
    assert "no progress" in result.detail
    assert trio.current_time() - started < LIMITS.max_wait + 1
    assert os.listdir(tmp_path) == []


async def test_cycle_never_ready_is_hang(tmp_path):
    result = await one_cycle(NeverReady(), tmp_path)

    assert result.outcome == "hang"


async def test_cycle_livelock_is_hang_after_max_wait(tmp_path):
    started = trio.current_time()
    result = await one_cycle(Busy(), tmp_path)

    assert result.outcome == "hang"
    assert trio.current_time() - started >= LIMITS.max_wait


async def test_cycle_crash(tmp_path):
    result = await one_cycle(Crashing(), tmp_path)

    assert result.outcome == "crash"
    assert "RuntimeError: follower bug" in result.detail


async def test_cycle_lost(tmp_path):
    result = await one_cycle(SkipsSecond(), tmp_path)

    assert result.findings == {"lost"}
    assert result.lines_lost == 1


async def test_cycle_duplicate(tmp_path):
    result = await one_cycle(Doubles(), tmp_path)

    assert result.findings == {"duplicate"}
    assert result.lines_duplicated == 6


async def test_cycle_reorder(tmp_path):
    result = await one_cycle(HoldsFirst(), tmp_path)

    assert result.findings == {"reorder"}
    assert result.lines_reordered == 1


async def test_cycle_torn(tmp_path):
    result = await one_cycle(Tears(), tmp_path)

    assert "torn" in result.findings
    assert result.outcome == "torn"


async def test_cycle_late_write_without_drain_is_lost(tmp_path):
    result = await one_cycle(StopsWithoutDrain(), tmp_path, points=(HookPoint.AFTER_EXIT,))

    assert result.findings == {"lost"}
    assert result.lines_lost == 1
    assert result.window_hit


async def test_cycle_after_remove_write_is_outside_window(tmp_path):
    result = await one_cycle(Follower(), tmp_path, points=(HookPoint.AFTER_REMOVE,))

    assert result.outcome == "ok"
    assert not result.window_hit


class OutOfInotify(Follower):
    async def follow(self, ctx: FollowContext) -> None:
        raise OSError(errno.EMFILE, "inotify_init1 failed: Too many open files")


async def test_cycle_inotify_exhaustion_stops_run(tmp_path):
    with pytest.raises(ResourceLimitError) as caught:
        await one_cycle(OutOfInotify(), tmp_path)

    assert "fs.inotify.max_user_instances" in str(caught.value)


async def test_cycle_unfired_fault_not_counted(tmp_path):
    # Stuck never removes a watch, so the before-remove fault never lands.
    result = await one_cycle(Stuck(), tmp_path)

    assert result.outcome == "hang"
    assert result.faults == ()
    assert not result.window_hit


async def test_rotation_inside_follower_does_not_stall(tmp_path):
    # Two rotations at before-remove run inside the follower's own task; publishing
    # their notices must not make it wait on itself.
    rotation = FaultSpec("rotate", (HookPoint.BEFORE_REMOVE,), method="chain", count=2)
    schedule = make_schedule(3, 0, lines=5, max_gap=0.001, extra_faults=(rotation,))
    with trio.fail_after(10):
        result = await run_cycle(get_target("docker-17.12.0"), schedule, str(tmp_path), LIMITS)

    assert "hang" not in result.findings
