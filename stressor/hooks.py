"""Named points inside a follower where the fault injector acts, and its progress count.

Watchers and the cycle call ``Hooks.fire`` at fixed moments. The injector attaches
an action to a point, and the action runs the first time that point fires in the
cycle, inside the follower's own task, so the fault lands exactly there.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable

import trio

Action = Callable[[], Awaitable[None]]


class HookPoint(enum.Enum):
    """Moments of a cycle where a fault can be injected."""

    BEFORE_START = "before-start"
    """The file exists and the follower has not started yet."""

    AFTER_FIRST_READ = "after-first-read"
    """The follower read the file once; only followers that offer this hook fire it."""

    MID_STREAM = "mid-stream"
    """The writer is between two of its lines."""

    AFTER_EXIT = "after-exit"
    """The writer has exited and the follower has not been notified yet."""

    BEFORE_REMOVE = "before-remove"
    """The follower is about to remove its watch (before ``inotify_rm_watch``)."""

    AFTER_REMOVE = "after-remove"
    """The follower's watch removal returned and the follower has not finished yet."""


def parse_hook_point(text: str) -> HookPoint:
    """Return the hook point named ``text``; raise ``ValueError`` naming the choices."""
    for point in HookPoint:
        if point.value == text:
            return point
    choices = ", ".join(point.value for point in HookPoint)
    raise ValueError(f"unknown hook point {text!r}: choose one of {choices}")


class Hooks:
    """Hook points of one cycle, with the time each first fired and a progress count.

    ``progress`` counts observable steps of the follower: events read, lines
    delivered, hook points passed. The hang detector compares it over time, so a
    follower that is slow under load is distinguished from one that is stuck.
    ``last_progress_at`` is the time of the last progress of any kind, which the hang
    detector measures from. ``last_step_at`` is the time of the follower's own last
    step (a delivery or a hook point); the checker requires every line written
    before it, because the follower was still at work then.
    """

    def __init__(self) -> None:
        self._actions: dict[HookPoint, list[Action]] = {}
        self.fired_at: dict[HookPoint, float] = {}
        self.progress = 0
        self.last_progress_at = 0.0
        self.last_step_at = 0.0

    def on(self, point: HookPoint, action: Action) -> None:
        """Run ``action`` the first time ``point`` fires."""
        self._actions.setdefault(point, []).append(action)

    def advance(self, *, follower_step: bool = True) -> None:
        """Count one step of observable progress.

        A watcher's reader task reading an event is progress for the hang detector
        but no step of the follower itself (``follower_step=False``). The reader may
        read the final ``IN_IGNORED`` after the follower's last read, and a line
        written in between could not have been read.
        """
        self.progress += 1
        self.last_progress_at = trio.current_time()
        if follower_step:
            self.last_step_at = self.last_progress_at

    async def fire(self, point: HookPoint) -> None:
        """Record that ``point`` was reached and run the actions attached to it."""
        self.advance()
        if point in self.fired_at:
            return
        self.fired_at[point] = trio.current_time()
        for action in self._actions.pop(point, []):
            await action()
        # The step ends after its actions, so what they wrote counts as before it.
        self.last_progress_at = trio.current_time()
        self.last_step_at = self.last_progress_at
