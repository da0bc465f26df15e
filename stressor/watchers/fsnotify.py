"""A model of the fsnotify inotify watcher as Docker 1.12 and 1.13 vendored it (v1.2.11).

The semantics that matter for the follow-loop deadlock, all kept here:

- ``events`` and ``errors`` are unbuffered: the reader task hands each event over
  and waits until the follower takes it, in a select that also watches ``done``.
- ``done`` is closed only by ``close``, which the follow loop calls after ``remove``
  returned.
- ``remove`` calls ``inotify_rm_watch`` and then waits until the reader task has
  processed the watch's ``IN_IGNORED`` (fsnotify v1.2.5 to v1.4.6). An event queued
  before ``IN_IGNORED`` must be handed over first.
- The reader drops an event whose path no longer exists, unless the event is a
  removal or a rename (an ``lstat`` check).

``remove_waits=False`` gives fsnotify v1.4.7, whose ``remove`` no longer waits.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import trio

from stressor.backends import InotifyInstance, current_backend
from stressor.gochan import Channel, Signal
from stressor.hooks import HookPoint, Hooks
from stressor.watchers import inotify
from stressor.watchers.event import Op, WatchEvent, op_from_mask
from stressor.watchers.kernel import WatchError

log = logging.getLogger(__name__)


class FsnotifyWatcher:
    """The 2016 fsnotify ``Watcher``. Build it with ``open_fsnotify_watcher``."""

    def __init__(self, instance: InotifyInstance, hooks: Hooks, *, remove_waits: bool) -> None:
        self._inotify = instance
        self._path_exists = current_backend().os.path.lexists
        self._hooks = hooks
        self._remove_waits = remove_waits
        self._wd_by_path: dict[str, int] = {}
        self._path_by_wd: dict[int, str] = {}
        self._watch_dropped = trio.lowlevel.ParkingLot()
        self.done = Signal()
        self.events: Channel[WatchEvent] = Channel(0)
        self.errors: Channel[WatchError] = Channel(0)

    def add(self, path: str) -> None:
        """Watch ``path``, as ``Watcher.Add`` did."""
        wd = self._inotify.add_watch(path, inotify.FSNOTIFY_MASK)
        self._wd_by_path[path] = wd
        self._path_by_wd[wd] = path

    async def remove(self, path: str) -> WatchError | None:
        """Remove the watch on ``path`` and, in v1.2.11, wait for its ``IN_IGNORED``.

        Returns the error fsnotify would return, or None, the way Go returns errors.
        """
        await self._hooks.fire(HookPoint.BEFORE_REMOVE)
        wd = self._wd_by_path.get(path)
        if wd is None:
            return WatchError(f"can't remove non-existent inotify watch for: {path}")
        try:
            self._inotify.rm_watch(wd)
        except OSError as error:
            return WatchError(str(error))

        if self._remove_waits:
            while path in self._wd_by_path:
                await self._watch_dropped.park()
        else:
            self._forget(wd)
        await self._hooks.fire(HookPoint.AFTER_REMOVE)
        return None

    def close(self) -> None:
        """Close ``done`` so the reader task returns, as ``Watcher.Close`` did."""
        self.done.close()

    def _forget(self, wd: int) -> None:
        path = self._path_by_wd.pop(wd, None)
        if path is not None and self._wd_by_path.get(path) == wd:
            del self._wd_by_path[path]
        self._watch_dropped.unpark_all()

    async def _read_events(self) -> None:
        while not self.done.is_closed():
            await self._inotify.wait_readable()
            for raw in self._inotify.read_events():
                self._hooks.advance(follower_step=False)
                if not await self._handle(raw):
                    return

    async def _handle(self, raw: inotify.RawEvent) -> bool:
        """Process one raw event; return False once ``done`` was seen."""
        if raw.mask & inotify.IN_Q_OVERFLOW:
            return await self._hand_over(self.errors, WatchError("fsnotify queue overflow"))

        path = self._path_by_wd.get(raw.wd, "")
        if raw.mask & inotify.IN_IGNORED:
            self._forget(raw.wd)
            return True

        event = WatchEvent(path, op_from_mask(raw.mask), raw.mask)
        if not (event.op & (Op.REMOVE | Op.RENAME)) and not self._path_exists(path):
            return True
        return await self._hand_over(self.events, event)

    async def _hand_over(self, channel: Channel[Any], value: object) -> bool:
        """Send ``value`` unless ``done`` closes first; return whether it was sent."""
        async with trio.open_nursery() as nursery:
            sent = False

            async def send() -> None:
                nonlocal sent
                await channel.send(value)
                sent = True
                nursery.cancel_scope.cancel()

            async def wait_done() -> None:
                await self.done.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(send)
            nursery.start_soon(wait_done)
        return sent


@contextlib.asynccontextmanager
async def open_fsnotify_watcher(
    hooks: Hooks, *, remove_waits: bool = True
) -> AsyncIterator[FsnotifyWatcher]:
    """Create the modelled watcher on the current backend and its reader task; end both."""
    instance = current_backend().open_inotify()
    try:
        async with trio.open_nursery() as nursery:
            watcher = FsnotifyWatcher(instance, hooks, remove_waits=remove_waits)
            nursery.start_soon(watcher._read_events)
            yield watcher
            watcher.close()
            nursery.cancel_scope.cancel()
    finally:
        await instance.aclose()
