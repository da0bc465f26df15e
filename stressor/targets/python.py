"""Followers written in Python as targets: the protocol they implement, and its adapter.

A Python follower is an async callable ``follow(path, watcher, writer_done, deliver)``:

- ``path``: the log file, which exists and is empty when ``follow`` is called.
- ``watcher``: stressor's own inotify watcher (a ``Watcher``). ``watcher.add(path)``
  starts watching, ``await watcher.events.receive()`` returns the next
  ``WatchEvent`` and ``await watcher.remove(path)`` removes the watch. The hook
  points fire inside it, so faults land just before and just after the removal.
- ``writer_done``: ``await writer_done.wait()`` returns once the writer has exited
  and its output is complete. ``writer_done.is_closed()`` returns whether it is
  done, without waiting.
- ``deliver``: ``deliver(line)`` hands over one complete line as bytes, newline
  included.

The writer starts once the follower has added its watch on ``path`` (or at once,
with ``wait_for_watch=False``). The follower must return after ``writer_done``,
having delivered every line written before it returns.

The same follower runs on real files with kernel inotify or, with ``backend =
"fake"``, on fake files with a simulated inotify. There the watcher is simulated,
and while ``follow`` runs, its module's ``os`` (``import os``, ``from os import
read``) calls the fake files (``stressor.backends.redirect_os``). A follower that
opens files with ``open()``, ``io`` or ``pathlib`` runs on real files only.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Protocol

from stressor.backends import redirect_os
from stressor.targets.base import FollowContext
from stressor.watchers.event import WatchEvent
from stressor.watchers.kernel import InotifyWatcher, open_inotify_watcher

# Target names become file names and metric label values, so they stay short and plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class EventReceiver(Protocol):
    """The watcher's event channel."""

    async def receive(self) -> WatchEvent:
        """Return the next event, waiting until there is one."""
        ...


class ErrorReceiver(Protocol):
    """The watcher's error channel, such as an overflow of the inotify queue."""

    async def receive(self) -> Exception:
        """Return the next watcher error, waiting until there is one."""
        ...


class Watcher(Protocol):
    """The part of stressor's watcher that a Python follower may use."""

    @property
    def events(self) -> EventReceiver:
        """The channel of events on watched paths."""
        ...

    @property
    def errors(self) -> ErrorReceiver:
        """The channel of watcher errors."""
        ...

    def add(self, path: str) -> None:
        """Watch ``path``."""
        ...

    async def remove(self, path: str) -> None:
        """Remove the watch on ``path``."""
        ...


class WriterDone(Protocol):
    """The signal that the writer has exited and its output is complete."""

    async def wait(self) -> None:
        """Wait until the writer is done."""
        ...

    def is_closed(self) -> bool:
        """Tell whether the writer is done."""
        ...


class Follow(Protocol):
    """A follower written in Python; see the module documentation for the contract."""

    def __call__(
        self,
        path: str,
        watcher: Watcher,
        writer_done: WriterDone,
        deliver: Callable[[bytes], None],
    ) -> Awaitable[None]: ...


class _ReadyOnWatch:
    """The watcher handed to the follower: it starts the writer once ``path`` is watched."""

    def __init__(self, watcher: InotifyWatcher, ctx: FollowContext) -> None:
        self._watcher = watcher
        self._ctx = ctx
        self._ready = False

    @property
    def events(self) -> EventReceiver:
        return self._watcher.events

    @property
    def errors(self) -> ErrorReceiver:
        return self._watcher.errors

    def add(self, path: str) -> None:
        self._watcher.add(path)
        if path == self._ctx.path and not self._ready:
            self._ready = True
            self._ctx.ready()

    async def remove(self, path: str) -> None:
        await self._watcher.remove(path)


class PythonTarget:
    """A follower written in Python, as a target: ``PythonTarget("my-follower", follow)``.

    Args:
        name: the target's name in reports and metrics: letters, digits, ``.``,
            ``_`` and ``-``, at most 64 characters, and no built-in target's name.
        follow: the follower (``Follow``).
        description: one line for listings; the default names ``follow``.
        wait_for_watch: start the writer once the follower watches ``path``. With
            False the writer starts as soon as ``follow`` is called, which suits a
            follower that does not use the watcher.

    Raises:
        ValueError: ``name`` is invalid or ``follow`` is not callable.
    """

    def __init__(
        self,
        name: str,
        follow: Follow,
        *,
        description: str | None = None,
        wait_for_watch: bool = True,
    ) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"invalid target name {name!r}: use letters, digits, '.', '_' and '-',"
                " at most 64 characters, starting with a letter or digit"
            )
        if not callable(follow):
            raise ValueError(f"follow must be an async callable, not {follow!r}")
        self.name = name
        label = getattr(follow, "__qualname__", type(follow).__name__)
        self.description = description or f"Python follower {label}"
        self._follow = follow
        self._wait_for_watch = wait_for_watch

    def __repr__(self) -> str:
        return f"PythonTarget({self.name!r}, {self._follow!r})"

    async def follow(self, ctx: FollowContext) -> None:
        """Run the Python follower on ``ctx.path`` with a fresh inotify watcher."""

        def deliver(line: bytes) -> None:
            if not isinstance(line, bytes):
                raise TypeError(f"deliver() takes bytes, not {type(line).__name__}: {line!r}")
            ctx.deliver(line)

        failure: Exception | None = None
        async with open_inotify_watcher(ctx.hooks) as watcher:
            if not self._wait_for_watch:
                ctx.ready()
            try:
                with redirect_os(self._follow):
                    watched = _ReadyOnWatch(watcher, ctx)
                    await self._follow(ctx.path, watched, ctx.writer_done, deliver)
            except Exception as error:
                # Raised outside the watcher's nursery, so the cycle's crash detail
                # names the follower's own error rather than a nursery's group.
                failure = error
        if failure is not None:
            raise _single_error(failure)


def _single_error(error: Exception) -> Exception:
    """Return the only error inside nested one-error groups, or ``error`` itself."""
    while isinstance(error, ExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
