"""A correct inotify follower: the negative control that never hangs and never loses."""

from __future__ import annotations

import contextlib
import os

from stressor.backends import current_backend
from stressor.gochan import Case, select
from stressor.hooks import HookPoint
from stressor.targets.base import FollowContext, LineReader
from stressor.watchers import inotify
from stressor.watchers.kernel import InotifyWatcher, open_inotify_watcher

# Directory events that tell that the followed name now points at another file.
DIRECTORY_MASK = inotify.IN_CREATE | inotify.IN_MOVED_TO | inotify.IN_MOVED_FROM | inotify.IN_DELETE


def _identity(path: str) -> tuple[int, int] | None:
    """Return (device, inode) of the file ``path`` names now, following symlinks."""
    try:
        stat = current_backend().os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


class _Source:
    """The file the follower reads now: its descriptor, identity and line reader."""

    def __init__(self, path: str) -> None:
        self._os = current_backend().os
        self.fd = self._os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        stat = self._os.fstat(self.fd)
        self.identity = (stat.st_dev, stat.st_ino)
        self.reader = LineReader(self.fd)

    def close(self) -> None:
        self._os.close(self.fd)


class ReferenceFollower:
    """Follow by name with kernel inotify, like ``tail -F``, and drain the file at the end.

    It watches the file and the directories of the path and of its symlink target,
    so renames, deletions, truncations and symlink swaps all wake it up. Whenever
    the path names another file, it reads the old file to its end before it opens
    the new one. At the end it removes its watch, which never waits for the event
    reader, and then reads once more, so any line written before it returns is read.
    """

    name = "reference"
    description = "correct inotify follower: follows by name, drains after removing its watch"

    async def follow(self, ctx: FollowContext) -> None:
        """Deliver every line of ``ctx.path`` until the writer is done and the file drained."""
        source = _Source(ctx.path)
        try:
            async with open_inotify_watcher(ctx.hooks) as watcher:
                watcher.add(ctx.path)
                for directory in _directories(ctx.path):
                    watcher.add(directory, DIRECTORY_MASK)
                # Watch first, read second: a line written between the two still
                # raises an event, so nothing waits for a later write.
                source = self._catch_up(ctx, source, watcher)
                await ctx.hooks.fire(HookPoint.AFTER_FIRST_READ)
                ctx.ready()
                cases: list[Case] = [watcher.events, watcher.errors, ctx.writer_done]
                while True:
                    source = self._catch_up(ctx, source, watcher)
                    index, _ = await select(cases, ctx.rng)
                    if cases[index] is ctx.writer_done:
                        break

                await watcher.remove(ctx.path)
                source = self._catch_up(ctx, source, None)
        finally:
            source.close()

    @staticmethod
    def _catch_up(ctx: FollowContext, source: _Source, watcher: InotifyWatcher | None) -> _Source:
        """Read the current file to its end, and move to the file the path names now."""
        for line in source.reader.read_lines():
            ctx.deliver(line)
        while _identity(ctx.path) not in (None, source.identity):
            try:
                fresh = _Source(ctx.path)
            except FileNotFoundError:
                break
            for line in source.reader.read_lines():
                ctx.deliver(line)
            source.close()
            source = fresh
            if watcher is not None:
                # The path may already be gone again; the directory watch reports
                # the next file.
                with contextlib.suppress(FileNotFoundError):
                    watcher.add(ctx.path)
            for line in source.reader.read_lines():
                ctx.deliver(line)
        return source


def _directories(path: str) -> list[str]:
    """Return the directory of ``path`` and, if it is a symlink, of its target."""
    paths = current_backend().os.path
    directories = [os.path.dirname(paths.abspath(path))]
    target_directory = os.path.dirname(paths.realpath(path))
    if target_directory not in directories:
        directories.append(target_directory)
    return directories
