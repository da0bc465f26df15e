"""One cycle: a fresh file, a follower, a writer, the faults, and the verdict."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import random
import shutil

import trio

from stressor import results
from stressor.checks import Delivery, check_lines
from stressor.faults import Fault, FaultEnvironment, inject
from stressor.gochan import Signal
from stressor.hooks import HookPoint, Hooks
from stressor.results import CycleResult
from stressor.schedule import Schedule
from stressor.targets.base import FollowContext, RotationNotices, Target
from stressor.writers import Writer

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CycleLimits:
    """Time limits of a cycle, in seconds.

    Attributes:
        deadline: a follower that shows no progress for this long after the writer's
            exit is hung. Progress is any event read, line delivered or hook passed,
            so a follower that is only slow under load is not called hung.
        max_wait: the longest a follower may take after the writer's exit even while
            it makes progress; past it the cycle ends as a hang as well.
    """

    deadline: float = 1.0
    max_wait: float = 10.0


@dataclasses.dataclass
class _Follower:
    """The follower task's state, as the cycle observes it."""

    ready: trio.Event = dataclasses.field(default_factory=trio.Event)
    done: trio.Event = dataclasses.field(default_factory=trio.Event)
    finished_at: float | None = None
    error: BaseException | None = None


async def _run_follower(
    target: Target, ctx: FollowContext, state: _Follower, scope: trio.CancelScope
) -> None:
    with scope:
        try:
            await target.follow(ctx)
            state.finished_at = trio.current_time()
        except Exception as error:
            state.error = error
    state.done.set()


async def _wait_until_ready(state: _Follower, limit: float) -> bool:
    """Wait until the follower watches its file or returned; False if neither came in time."""
    with trio.move_on_after(limit):
        while not (state.ready.is_set() or state.done.is_set()):
            async with trio.open_nursery() as nursery:

                async def wait_for(event: trio.Event) -> None:
                    await event.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(wait_for, state.ready)
                nursery.start_soon(wait_for, state.done)
        return True
    return False


async def _wait_or_hang(state: _Follower, hooks: Hooks, limits: CycleLimits) -> bool:
    """Wait for the follower to return; return True when it is hung instead.

    It is hung once ``limits.deadline`` seconds pass with no progress, measured from
    its last step, or once ``limits.max_wait`` seconds pass in all.
    """
    started = trio.current_time()
    while True:
        stalled_since = max(started, hooks.last_progress_at)
        wake_at = min(stalled_since + limits.deadline, started + limits.max_wait)
        with trio.move_on_at(wake_at):
            await state.done.wait()
            return False

        now = trio.current_time()
        if now - max(started, hooks.last_progress_at) >= limits.deadline:
            return True
        if now - started >= limits.max_wait:
            return True


def _attach_faults(hooks: Hooks, faults: tuple[Fault, ...], env: FaultEnvironment) -> None:
    """Attach each fault to its hook point."""
    for fault in faults:

        async def act(fault: Fault = fault) -> None:
            await inject(fault, env)

        hooks.on(fault.point, act)


def _window_hit(landed: list[float], exited_at: float, hooks: Hooks, state: _Follower) -> bool:
    """Tell whether a fault landed between the writer's exit and the watch removal or return."""
    ends = [hooks.fired_at.get(HookPoint.AFTER_REMOVE), state.finished_at]
    known = [end for end in ends if end is not None]
    window_end = min(known) if known else float("inf")
    return any(exited_at <= when < window_end for when in landed)


def _prepare_file(cycle_directory: str, symlink: bool) -> str:
    """Create the empty log file, behind a symlink in symlink mode; return the followed path."""
    path = os.path.join(cycle_directory, "app.log")
    real = path
    if symlink:
        target_directory = os.path.join(cycle_directory, "target")
        os.mkdir(target_directory, 0o700)
        real = os.path.join(target_directory, "app.log")
        os.symlink(real, path)
    os.close(os.open(real, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    return path


async def run_cycle(
    target: Target,
    schedule: Schedule,
    directory: str,
    limits: CycleLimits,
    *,
    line_format: str = "docker-json",
    symlink: bool = False,
) -> CycleResult:
    """Run one cycle of ``target`` in ``directory`` and return its verdict.

    The follower gets a fresh empty file in a directory of its own (behind a symlink
    to another directory when ``symlink`` is set). Once it watches the file, the
    writer writes its lines and exits; faults act at their hook points; then the
    follower is told that the writer is done. A follower that stops making progress
    is cancelled and the cycle ends as a hang, so a cycle always ends within
    ``limits.max_wait`` of the writer's exit plus the writer's own pauses.
    """
    cycle_directory = os.path.join(directory, f"{target.name}-{schedule.cycle}")
    os.mkdir(cycle_directory, 0o700)
    try:
        path = _prepare_file(cycle_directory, symlink)
        writer = Writer(path, line_format=line_format)
        try:
            return await _run_in_file(target, schedule, path, writer, limits)
        finally:
            writer.close()
    finally:
        shutil.rmtree(cycle_directory, ignore_errors=True)


async def _write(writer: Writer, schedule: Schedule, hooks: Hooks) -> None:
    """Write the writer's lines, firing the mid-stream point after its line."""
    mid_stream = schedule.mid_stream_line
    for number, gap in enumerate(schedule.gaps, start=1):
        await writer.write_lines([gap])
        if number == mid_stream:
            await hooks.fire(HookPoint.MID_STREAM)


async def _run_in_file(
    target: Target, schedule: Schedule, path: str, writer: Writer, limits: CycleLimits
) -> CycleResult:
    hooks = Hooks()
    deliveries: list[Delivery] = []
    state = _Follower()
    caught_up = trio.Event()

    def deliver(raw: bytes) -> None:
        deliveries.append(Delivery(raw, trio.current_time()))
        hooks.advance()
        if writer.exiting and len(deliveries) >= len(writer.ledger) - len(writer.at_risk):
            caught_up.set()

    ctx = FollowContext(
        path=path,
        writer_done=Signal(),
        rotations=RotationNotices(),
        hooks=hooks,
        rng=random.Random(schedule.follower_seed),
        deliver=deliver,
        ready=state.ready.set,
    )

    hung = False
    async with trio.open_nursery() as nursery:
        env = FaultEnvironment(
            writer=writer,
            notify_rotation=functools.partial(ctx.rotations.publish, limits.deadline),
            spawn=nursery.start_soon,
        )
        _attach_faults(hooks, schedule.faults, env)
        await hooks.fire(HookPoint.BEFORE_START)
        scope = trio.CancelScope()
        nursery.start_soon(_run_follower, target, ctx, state, scope)
        started = await _wait_until_ready(state, limits.max_wait)
        if started and not state.done.is_set():
            await _write(writer, schedule, hooks)
            writer.exiting = True
            if schedule.catch_up and len(deliveries) < len(writer.ledger):
                # A follower that never catches up is judged later; waiting longer
                # than the hang deadline here would only slow the run down.
                with trio.move_on_after(limits.deadline):
                    await caught_up.wait()
            if schedule.settle > 0:
                await trio.sleep(schedule.settle)
        exited_at = trio.current_time()
        await hooks.fire(HookPoint.AFTER_EXIT)
        told_at = trio.current_time()
        ctx.writer_done.close()
        if not started or await _wait_or_hang(state, hooks, limits):
            hung = True
        if hung:
            scope.cancel()
        # Background fault tasks, such as a partial line's completion, end with the cycle.
        nursery.cancel_scope.cancel()

    hang_detail = ""
    if hung:
        passed = max(hooks.fired_at, key=hooks.fired_at.__getitem__, default=None)
        where = f", last hook point passed: {passed.value}" if passed else ""
        hang_detail = (
            f"no progress for {limits.deadline:g} s after the writer exited"
            f" ({len(deliveries)} lines delivered{where})"
        )
    return _verdict(
        target,
        schedule,
        writer,
        deliveries,
        state,
        hooks,
        env.landed,
        (exited_at, told_at),
        hang_detail,
    )


def _verdict(
    target: Target,
    schedule: Schedule,
    writer: Writer,
    deliveries: list[Delivery],
    state: _Follower,
    hooks: Hooks,
    landed: list[float],
    exit_times: tuple[float, float],
    hang_detail: str,
) -> CycleResult:
    hung = bool(hang_detail)
    finished = not hung and state.error is None
    exited_at, told_at = exit_times
    required_before = None
    if finished and state.finished_at is not None:
        # Lines written after the follower's last step, while it was only cleaning
        # up, could not have been read by any follower: those are indeterminate.
        required_before = min(state.finished_at, max(told_at, hooks.last_progress_at))
    lines = check_lines(
        writer.ledger,
        deliveries,
        required_before=required_before,
        at_risk=writer.at_risk,
        incomplete=writer.incomplete,
    )

    findings = set()
    detail = ""
    if hung:
        findings.add(results.HANG)
        detail = hang_detail
    elif state.error is not None:
        findings.add(results.CRASH)
        detail = f"follower raised {type(state.error).__name__}: {state.error}"
    if lines.lost:
        findings.add(results.LOST)
    if lines.duplicated:
        findings.add(results.DUPLICATE)
    if lines.reordered:
        findings.add(results.REORDER)
    if lines.torn:
        findings.add(results.TORN)

    exit_latency = state.finished_at - told_at if finished and state.finished_at else None
    return CycleResult(
        target=target.name,
        seed=schedule.seed,
        cycle=schedule.cycle,
        findings=frozenset(findings),
        faults=tuple(fault.describe() for fault in schedule.faults),
        fault_kinds=tuple(fault.kind for fault in schedule.faults),
        window_hit=_window_hit(landed, exited_at, hooks, state),
        lines_written=len(writer.ledger),
        lines_read=lines.read,
        lines_lost=lines.lost,
        lines_duplicated=lines.duplicated,
        lines_reordered=lines.reordered,
        lines_torn=lines.torn,
        lines_indeterminate=lines.indeterminate,
        delivery_latencies=lines.latencies,
        exit_latency=exit_latency,
        detail=detail,
    )
