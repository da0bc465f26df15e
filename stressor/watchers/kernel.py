"""A trio-native watcher over kernel inotify whose removal never waits for its reader.

It waits for the inotify descriptor with ``trio.lowlevel.wait_readable``, so the
event loop never blocks (on the fake backend, for the simulated instance: see
``stressor.backends``). Its shape follows fsnotify (add, remove, an event channel
and an error channel) with the removal semantics fsnotify adopted in v1.4.7:
``remove`` calls ``inotify_rm_watch`` and returns without waiting for
``IN_IGNORED``, so it cannot deadlock with event delivery.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import trio

from stressor.backends import InotifyInstance, current_backend
from stressor.gochan import Channel
from stressor.hooks import HookPoint, Hooks
from stressor.watchers import inotify
from stressor.watchers.event import WatchEvent, op_from_mask

log = logging.getLogger(__name__)

# Room for bursts of events so the reader seldom waits for the follower.
EVENT_BUFFER = 256


class WatchError(Exception):
    """A watcher failure reported on the error channel, such as a queue overflow."""


class InotifyWatcher:
    """Watch files with kernel inotify. Build it with ``open_inotify_watcher``."""

    def __init__(self, instance: InotifyInstance, hooks: Hooks) -> None:
        self._inotify = instance
        self._hooks = hooks
        self._wd_by_path: dict[str, int] = {}
        self._path_by_wd: dict[int, str] = {}
        self.events: Channel[WatchEvent] = Channel(EVENT_BUFFER)
        self.errors: Channel[WatchError] = Channel(1)

    def add(self, path: str, mask: int = inotify.FSNOTIFY_MASK) -> None:
        """Watch ``path`` (a file, or a directory's entries) for the events in ``mask``.

        Adding a path again after it was replaced, say by a rotation, moves the watch
        to the new file and drops the watch on the old one without firing hooks.
        """
        wd = self._inotify.add_watch(path, mask)
        old = self._wd_by_path.get(path)
        self._wd_by_path[path] = wd
        self._path_by_wd[wd] = path
        if old is not None and old != wd:
            self._path_by_wd.pop(old, None)
            try:
                self._inotify.rm_watch(old)
            except OSError as error:
                # EINVAL: the kernel already dropped it, because the old file is gone.
                log.debug("dropping the watch on the replaced %s failed: %s", path, error)

    async def remove(self, path: str) -> None:
        """Remove the watch on ``path`` without waiting for ``IN_IGNORED``.

        Raises:
            KeyError: ``path`` is not watched.
        """
        await self._hooks.fire(HookPoint.BEFORE_REMOVE)
        wd = self._wd_by_path.pop(path)
        self._path_by_wd.pop(wd, None)
        try:
            self._inotify.rm_watch(wd)
        except OSError as error:
            # EINVAL: the kernel already dropped the watch (the file was deleted).
            log.debug("inotify_rm_watch on %s (wd %d) failed: %s", path, wd, error)
        await self._hooks.fire(HookPoint.AFTER_REMOVE)

    async def _read_events(self) -> None:
        while True:
            await self._inotify.wait_readable()
            for raw in self._inotify.read_events():
                self._hooks.advance(follower_step=False)
                await self._dispatch(raw)

    async def _dispatch(self, raw: inotify.RawEvent) -> None:
        if raw.mask & inotify.IN_Q_OVERFLOW:
            await self.errors.send(WatchError("inotify event queue overflowed"))
            return
        if raw.mask & inotify.IN_IGNORED:
            self._path_by_wd.pop(raw.wd, None)
            return
        path = self._path_by_wd.get(raw.wd)
        if path is None:
            # An event queued before its watch was removed; no watch is left for it.
            return
        await self.events.send(WatchEvent(path, op_from_mask(raw.mask), raw.mask, raw.name))


@contextlib.asynccontextmanager
async def open_inotify_watcher(hooks: Hooks) -> AsyncIterator[InotifyWatcher]:
    """Create an inotify instance of the current backend with its reader task; close both."""
    instance = current_backend().open_inotify()
    try:
        async with trio.open_nursery() as nursery:
            watcher = InotifyWatcher(instance, hooks)
            nursery.start_soon(watcher._read_events)
            yield watcher
            nursery.cancel_scope.cancel(reason="inotify watcher closed")
    finally:
        await instance.aclose()
