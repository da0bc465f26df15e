"""The follower's task as a cycle watches it: start, readiness, and hang detection."""

from __future__ import annotations

import dataclasses

import trio

from stressor.backends import redirect_os
from stressor.hooks import Hooks
from stressor.targets.base import FollowContext, Target


@dataclasses.dataclass(frozen=True)
class CycleLimits:
    """Time limits of a cycle, in seconds.

    Attributes:
        deadline: a follower that shows no progress for this long after the writer's
            exit is hung. Progress is any event read, line delivered or hook passed,
            so a follower that is only slow under load is not called hung.
        max_wait: the maximum time a follower may take after the writer's exit even while
            it makes progress; past it the cycle ends as a hang as well.
    """

    deadline: float = 1.0
    max_wait: float = 10.0


@dataclasses.dataclass
class FollowerState:
    """The follower task's state, as the cycle observes it.

    ``cancelled`` is set when a fault cancelled the follower on purpose, the way a
    client leaves ``docker logs -f``; such a follower is neither hung nor lossy.
    """

    ready: trio.Event = dataclasses.field(default_factory=trio.Event)
    done: trio.Event = dataclasses.field(default_factory=trio.Event)
    # Set with ``ready`` or ``done``, whichever comes first, so that the cycle waits
    # for either with a single Event.
    ready_or_done: trio.Event = dataclasses.field(default_factory=trio.Event)
    finished_at: float | None = None
    error: BaseException | None = None
    cancelled: bool = False

    def set_ready(self) -> None:
        """Record that the follower watches its file.

        The cycle hands this method to the follower as ``FollowContext.ready``.
        """
        self.ready.set()
        self.ready_or_done.set()


async def run_follower(
    target: Target, ctx: FollowContext, state: FollowerState, scope: trio.CancelScope
) -> None:
    with scope:
        try:
            # A follower from outside stressor that calls os itself reaches the
            # backend's files this way. stressor's own followers ask the backend.
            with redirect_os(type(target).follow):
                await target.follow(ctx)
            state.finished_at = trio.current_time()
        except Exception as error:
            state.error = error
    state.done.set()
    state.ready_or_done.set()


async def wait_until_ready(state: FollowerState, limit: float) -> bool:
    """Wait until the follower watches its file or returned; False if neither came in time."""
    with trio.move_on_after(limit):
        await state.ready_or_done.wait()
        return True
    return False


async def wait_or_hang(state: FollowerState, hooks: Hooks, limits: CycleLimits) -> bool:
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

        # Compared with the same sums that set wake_at: trio's MockClock lands
        # exactly on wake_at, and ``now - stalled_since`` may then fall one
        # rounding step short of the deadline, which would wake this loop forever.
        now = trio.current_time()
        if now >= max(started, hooks.last_progress_at) + limits.deadline:
            return True
        if now >= started + limits.max_wait:
            return True
