"""One cycle: a fresh file, a follower, a writer and the faults, then the verdict."""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import random

import trio

from stressor.backends import Backend, current_backend, make_backend, use_backend
from stressor.checks import Delivery
from stressor.cycle_files import CycleFiles, prepare_files
from stressor.faults import Fault, FaultEnvironment, inject
from stressor.gochan import Signal
from stressor.hooks import HookPoint, Hooks
from stressor.leaks import count_resources
from stressor.results import CycleResult
from stressor.rotations import rotate
from stressor.schedule import Schedule
from stressor.targets.base import (
    FollowContext,
    RotationNotices,
    Target,
    open_target,
    shared_directory,
)
from stressor.verdict import Observations, judge_cycle
from stressor.watchdog import (
    CycleLimits,
    FollowerState,
    run_follower,
    wait_or_hang,
    wait_until_ready,
)
from stressor.writers import Writer

log = logging.getLogger(__name__)

__all__ = ["CycleLimits", "CycleSetup", "ResourceLimitError", "run_cycle"]

# Errors of inotify_init1 and inotify_add_watch that mean the machine, not the
# follower, ran out: instances (EMFILE), files (ENFILE) or watches (ENOSPC).
_LIMIT_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOSPC)


class ResourceLimitError(OSError):
    """The machine ran out of inotify instances or watches during a cycle.

    That is not the follower's fault, so it is no finding: the run stops instead.
    """


def _root_error(error: BaseException | None) -> BaseException | None:
    """Return the first leaf of an exception group, or the error itself."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _check_resource_limit(error: BaseException | None) -> None:
    if isinstance(error, OSError) and error.errno in _LIMIT_ERRNOS and "inotify" in str(error):
        raise ResourceLimitError(
            error.errno,
            f"a follower could not get inotify resources ({error}); lower --concurrency,"
            " stop other inotify users, or raise fs.inotify.max_user_instances and"
            " fs.inotify.max_user_watches",
        )


@dataclasses.dataclass(frozen=True)
class CycleSetup:
    """The layout and writing of each cycle's file, apart from the random schedule.

    Attributes:
        line_format: the writer's line format: ``docker-json``, ``cri`` or ``plain``.
        symlink: follow a symlink to the log file, which lives in another directory.
        rotate_every: rotate before every this-many writer lines, the way a logger
            with a maximum file size does; 0 for never.
        rotate_method: the rotation method of those rotations.
        check_leaks: compare the process's descriptors and inotify watches before
            and after the follower; exact only while one cycle runs at a time.
        backend: ``real`` files, or ``fake`` files with a simulated inotify, each
            cycle in a fake file system of its own (``stressor.backends``).
    """

    line_format: str = "docker-json"
    symlink: bool = False
    rotate_every: int = 0
    rotate_method: str = "rename-create"
    check_leaks: bool = False
    backend: str = "real"


def _attach_faults(
    hooks: Hooks, faults: tuple[Fault, ...], env: FaultEnvironment, fired: list[Fault]
) -> None:
    """Attach each fault to its hook point; ``fired`` collects those whose point fired."""
    for fault in faults:

        async def act(fault: Fault = fault) -> None:
            fired.append(fault)
            await inject(fault, env)

        hooks.on(fault.point, act)


async def run_cycle(
    target: Target,
    schedule: Schedule,
    directory: str,
    limits: CycleLimits,
    setup: CycleSetup = CycleSetup(),
) -> CycleResult:
    """Run one cycle of ``target`` in ``directory`` and return its verdict.

    The follower gets a fresh empty file in a directory of its own. Once it watches
    the file, the writer writes its lines and exits, and faults act at their hook
    points. Then the follower is notified that the writer is done. A follower that
    stops making progress is cancelled and the cycle ends as a hang, so a cycle
    always ends within ``limits.max_wait`` of the writer's exit plus the writer's
    own pauses.

    A target with a session of its own (a long-lived program) is opened for this
    cycle alone, unless ``target`` is the follower its session yielded already
    (``stressor.targets.base.open_target``), as in a run.

    The files are those of the current backend (``stressor.backends.use_backend``),
    where ``directory`` must exist. With ``setup.backend`` set to ``fake`` while
    the current backend is real, the cycle gets a fresh fake file system, in which
    ``directory`` is created: a fake cycle then depends on no other cycle.
    """
    backend = current_backend()
    if setup.backend == "fake" and backend.name != "fake":
        backend = make_backend("fake")
        backend.os.makedirs(directory, 0o700, exist_ok=True)
    with use_backend(backend):
        return await _run_cycle_files(backend, target, schedule, directory, limits, setup)


async def _run_cycle_files(
    backend: Backend,
    target: Target,
    schedule: Schedule,
    directory: str,
    limits: CycleLimits,
    setup: CycleSetup,
) -> CycleResult:
    async with open_target(target, directory) as follower:
        shared = shared_directory(follower)
        files = prepare_files(
            backend, directory, follower.name, schedule.cycle, setup.symlink, shared
        )
        try:
            # Lines of a shared follower's cycles meet in one output, so each
            # cycle's writer has a number of its own.
            writer_id = schedule.cycle + 1 if shared is not None else 1
            writer = Writer(files.path, writer_id=writer_id, line_format=setup.line_format)
            try:
                cycle = _Cycle(follower, schedule, files, writer, limits, setup)
                return await cycle.run()
            finally:
                writer.close()
        finally:
            files.remove()


class _Cycle:
    """The moving parts of one cycle and the order in which they act."""

    def __init__(
        self,
        target: Target,
        schedule: Schedule,
        files: CycleFiles,
        writer: Writer,
        limits: CycleLimits,
        setup: CycleSetup,
    ) -> None:
        self.target = target
        self.files = files
        self.schedule = schedule
        self.writer = writer
        self.limits = limits
        self.setup = setup
        self.hooks = Hooks()
        self.deliveries: list[Delivery] = []
        self.state = FollowerState()
        self.caught_up = trio.Event()
        self.fired: list[Fault] = []
        self.ctx = FollowContext(
            path=files.path,
            writer_done=Signal(),
            rotations=RotationNotices(),
            hooks=self.hooks,
            rng=random.Random(schedule.follower_seed),
            deliver=self._deliver,
            ready=self.state.set_ready,
            writer_id=writer.writer_id,
        )

    def _deliver(self, raw: bytes) -> None:
        self.deliveries.append(Delivery(raw, trio.current_time()))
        self.hooks.advance()
        writer = self.writer
        if writer.exiting and len(self.deliveries) >= len(writer.ledger) - len(writer.at_risk):
            self.caught_up.set()

    async def _write(self, env: FaultEnvironment) -> None:
        """Write the writer's lines, rotating as the setup sets and firing mid-stream."""
        mid_stream = self.schedule.mid_stream_line
        every = self.setup.rotate_every
        for number, gap in enumerate(self.schedule.gaps, start=1):
            if every and number > 1 and (number - 1) % every == 0:
                rotate(self.writer, self.setup.rotate_method, number)
                await env.notify_rotation()
            await self.writer.write_lines([gap])
            if number == mid_stream:
                await self.hooks.fire(HookPoint.MID_STREAM)

    async def _exit_writer(self) -> None:
        """Let the follower catch up if the schedule asks for it, then let the writer exit."""
        writer = self.writer
        writer.exiting = True
        if self.schedule.catch_up and len(self.deliveries) < len(writer.ledger):
            # A follower that never catches up is judged later; waiting longer
            # than the hang deadline here would only slow the run down.
            with trio.move_on_after(self.limits.deadline):
                await self.caught_up.wait()
        if self.schedule.settle > 0:
            await trio.sleep(self.schedule.settle)

    async def _publish_rotation(self, nursery: trio.Nursery) -> None:
        """Publish a rotation notice from a task of its own, so the writer goes on at once.

        A rotation that a fault makes inside the follower's own task (at
        ``before-remove``, say) would otherwise wait for that same task to take it.
        """
        nursery.start_soon(self.ctx.rotations.publish, self.limits.deadline)

    def _cancel_follower(self, scope: trio.CancelScope) -> None:
        if not self.state.done.is_set():
            self.state.cancelled = True
            scope.cancel()

    async def run(self) -> CycleResult:
        """Run the cycle and return its verdict."""
        state = self.state
        scope = trio.CancelScope()
        before = count_resources() if self.setup.check_leaks else None
        hung = False
        async with trio.open_nursery() as nursery:
            env = FaultEnvironment(
                writer=self.writer,
                notify_rotation=functools.partial(self._publish_rotation, nursery),
                spawn=nursery.start_soon,
                cancel_follower=functools.partial(self._cancel_follower, scope),
            )
            _attach_faults(self.hooks, self.schedule.faults, env, self.fired)
            await self.hooks.fire(HookPoint.BEFORE_START)
            nursery.start_soon(run_follower, self.target, self.ctx, state, scope)
            started = await wait_until_ready(state, self.limits.max_wait)
            if started and not state.done.is_set():
                await self._write(env)
                await self._exit_writer()
            exited_at = trio.current_time()
            await self.hooks.fire(HookPoint.AFTER_EXIT)
            told_at = trio.current_time()
            self.ctx.writer_done.close()
            if not started or await wait_or_hang(state, self.hooks, self.limits):
                hung = True
                scope.cancel()
            # Background fault tasks, such as a partial line's completion, end here.
            nursery.cancel_scope.cancel()

        _check_resource_limit(_root_error(state.error))
        leak_detail = ""
        if before is not None and not hung:
            leak_detail = count_resources().leaked_since(before)
        check_release = getattr(self.target, "check_release", None)
        if check_release is not None and not hung:
            removed = self.files.identities()
            self.writer.close()
            self.files.remove()
            leak_detail = await check_release(self.ctx, self.files.prefix, removed)
        seen = Observations(
            deliveries=self.deliveries,
            landed=env.landed,
            fired=tuple(self.fired),
            exited_at=exited_at,
            told_at=told_at,
            hang_detail=self._hang_detail() if hung else "",
            leak_detail=leak_detail,
            evidence=() if hung else tuple(self.ctx.evidence),
        )
        return judge_cycle(self.target.name, self.schedule, self.writer, state, self.hooks, seen)

    def _hang_detail(self) -> str:
        fired = self.hooks.fired_at
        # The last one inserted: under MockClock several points fire at one instant.
        passed = next(reversed(fired), None)
        where = f", last hook point passed: {passed.value}" if passed else ""
        evidence = "".join(f"; {note}" for note in self.ctx.evidence)
        return (
            f"no progress for {self.limits.deadline:g} s after the writer exited"
            f" ({len(self.deliveries)} lines delivered{where}){evidence}"
        )
