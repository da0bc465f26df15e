"""A stat-polling watcher with the same shape as the inotify watchers.

Like Docker's ``filenotify`` poller, it compares size and modification time at a
fixed interval and reports a write when either changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio

from stressor.backends import StatResult, current_backend
from stressor.gochan import Channel
from stressor.hooks import HookPoint, Hooks
from stressor.watchers.event import Op, WatchEvent

# Docker's poller waits 200 ms between checks; a shorter default keeps cycles short
# while still far slower than inotify delivery.
DEFAULT_INTERVAL = 0.01


class PollingWatcher:
    """Poll watched files with the backend's ``stat``. Build it with ``open_polling_watcher``."""

    def __init__(self, nursery: trio.Nursery, hooks: Hooks, interval: float) -> None:
        self._nursery = nursery
        self._hooks = hooks
        self._interval = interval
        self._os = current_backend().os
        self._scopes: dict[str, trio.CancelScope] = {}
        self.events: Channel[WatchEvent] = Channel(1)

    def add(self, path: str) -> None:
        """Start polling ``path``; raise ``OSError`` if it cannot be stat-ed."""
        first = self._os.stat(path)
        scope = trio.CancelScope()
        self._scopes[path] = scope
        self._nursery.start_soon(self._poll, path, first, scope)

    async def remove(self, path: str) -> None:
        """Stop polling ``path``; raise ``KeyError`` if it is not polled."""
        await self._hooks.fire(HookPoint.BEFORE_REMOVE)
        self._scopes.pop(path).cancel()
        await self._hooks.fire(HookPoint.AFTER_REMOVE)

    async def _poll(self, path: str, last: StatResult, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                await trio.sleep(self._interval)
                try:
                    now = self._os.stat(path)
                except FileNotFoundError:
                    await self.events.send(WatchEvent(path, Op.REMOVE))
                    return
                self._hooks.advance(follower_step=False)
                if (now.st_size, now.st_mtime_ns) != (last.st_size, last.st_mtime_ns):
                    last = now
                    await self.events.send(WatchEvent(path, Op.WRITE))


@contextlib.asynccontextmanager
async def open_polling_watcher(
    hooks: Hooks, *, interval: float = DEFAULT_INTERVAL
) -> AsyncIterator[PollingWatcher]:
    """Create a polling watcher whose poll tasks end when the block exits."""
    async with trio.open_nursery() as nursery:
        yield PollingWatcher(nursery, hooks, interval)
        nursery.cancel_scope.cancel()
