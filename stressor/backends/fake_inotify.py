"""A simulated inotify: instances, watches and event queues that follow the kernel's rules.

``InotifyKernel`` plays the kernel's side. The fake ``os`` functions
(``stressor.backends.fake``) tell it what happened to which inode, and it queues
on every interested watch the event Linux would queue, in the same order. The
rules, checked against Linux 6.18 by ``tests/test_conformance.py``:

- Watches belong to inodes. One instance has one watch per inode, so adding a
  path again returns the same watch descriptor and replaces the mask.
  ``IN_MASK_ADD`` adds to the mask instead, and ``IN_MASK_CREATE`` fails with
  ``EEXIST``. Watch descriptors count up from 1 per instance and are not reused.
- An event on a file reaches the file's watch (no name) and the watch on the
  directory the file was opened or named through (with the entry's name), the
  directory's first. The directory is the one of the path used, even after the
  file was renamed or unlinked: a descriptor keeps its directory entry, as the
  kernel's dentry does. ``IN_EXCL_UNLINK`` on the directory watch drops the events
  of unlinked entries.
- ``IN_ATTRIB`` (link count), ``IN_MOVE_SELF`` and ``IN_DELETE_SELF`` reach the
  inode's watch only. ``IN_CREATE``, ``IN_DELETE``, ``IN_MOVED_FROM`` and
  ``IN_MOVED_TO`` reach the directory's watch with the name, and with
  ``IN_ISDIR`` for directories. A rename's two events share a cookie.
- ``IN_DELETE_SELF`` comes when the inode's last link is gone and the directory
  entry it was removed through is no longer open: at the unlink or rename, or at
  the last ``close`` of a descriptor opened through that entry. Then the watches
  are dropped, each with ``IN_IGNORED``, as after ``rm_watch`` and after an
  ``IN_ONESHOT`` watch fired.
- An event equal to the last unread one of its queue (watch descriptor, mask and
  name; the kernel ignores the cookie) is merged into it. A queue holding
  ``max_queued_events`` events takes no more; one ``IN_Q_OVERFLOW`` (watch
  descriptor -1) is queued instead, also in place of an ``IN_IGNORED``.

Nothing here waits on a file descriptor: a reader waits in a ``trio`` parking lot,
woken when its queue gets an event, so the simulation runs under ``MockClock``.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import os
from collections.abc import Callable

import trio

from stressor.backends.virtual_time import VirtualClock
from stressor.watchers import inotify
from stressor.watchers.inotify import RawEvent

IN_ALL_EVENTS = 0x00000FFF
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_MASK_CREATE = 0x10000000
IN_MASK_ADD = 0x20000000
IN_ISDIR = inotify.IN_ISDIR
IN_ONESHOT = 0x80000000

_KEPT_FLAGS = IN_EXCL_UNLINK | IN_ONESHOT

# /proc/sys/fs/inotify/max_queued_events on a default Linux.
DEFAULT_MAX_QUEUED_EVENTS = 16384

# sizeof(struct inotify_event); names are padded with NULs to a multiple of it.
_EVENT_SIZE = 16

Inode = object
"""A pyfakefs ``FakeFile`` or ``FakeDirectory``; watches are keyed by its identity."""

Resolve = Callable[[str, bool], tuple[Inode, bool]]
"""A function that resolves (path, follow a final symlink) to (inode, is a directory)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TraceEntry:
    """One step of a fake-backend run: a file operation or a queued inotify event.

    ``time`` is ``trio.current_time()``, which is virtual in an exact replay.
    """

    time: float
    kind: str
    detail: str


class Trace:
    """The ordered record of operations and events that an exact replay repeats."""

    def __init__(self) -> None:
        self.entries: list[TraceEntry] = []

    def add(self, kind: str, detail: str) -> None:
        """Append a step, stamped with the trio clock (0 outside trio).

        A ``VirtualClock`` is read without the cost of a read, so a run with a
        trace keeps the virtual times of the same run without one.
        """
        try:
            clock = trio.lowlevel.current_clock()
        except RuntimeError:
            now = 0.0
        else:
            now = clock.peek() if isinstance(clock, VirtualClock) else clock.current_time()
        self.entries.append(TraceEntry(now, kind, detail))

    def count(self, kind: str) -> int:
        """Return how many entries are of ``kind``."""
        return sum(1 for entry in self.entries if entry.kind == kind)


def _error(code: int, path: str | None = None) -> OSError:
    return OSError(code, os.strerror(code), path)


@dataclasses.dataclass(slots=True, eq=False)
class _Watch:
    instance: SimulatedInotify
    wd: int
    inode: Inode
    mask: int
    path: str


class SimulatedInotify:
    """One simulated inotify instance. Build it with ``InotifyKernel.open_instance``."""

    def __init__(self, kernel: InotifyKernel, number: int, max_queued_events: int) -> None:
        self.number = number
        self._kernel = kernel
        self._max_queued = max_queued_events
        self._queue: collections.deque[RawEvent] = collections.deque()
        self._overflow_queued = False
        self._watches: dict[int, _Watch] = {}
        self._wd_by_inode: dict[Inode, int] = {}
        self._last_wd = 0
        self._readers = trio.lowlevel.ParkingLot()
        self.closed = False

    def __repr__(self) -> str:
        return f"<simulated inotify {self.number}, {len(self._queue)} events queued>"

    @property
    def queued(self) -> int:
        """Return how many events wait to be read, the overflow event included."""
        return len(self._queue)

    def _check_open(self) -> None:
        if self.closed:
            raise _error(errno.EBADF)

    def add_watch(self, path: str, mask: int) -> int:
        """Add or change the watch on the inode ``path`` names; return its descriptor.

        Raises:
            OSError: ``EINVAL`` for a mask without events, ``ENOENT`` for a missing
                path, ``ENOTDIR`` with ``IN_ONLYDIR`` on a file, ``EEXIST`` with
                ``IN_MASK_CREATE`` on a watched inode.
        """
        self._check_open()
        both = IN_MASK_ADD | IN_MASK_CREATE
        if not mask & IN_ALL_EVENTS or mask & both == both:
            raise _error(errno.EINVAL)
        inode, is_directory = self._kernel.resolve(path, not mask & IN_DONT_FOLLOW)
        if mask & IN_ONLYDIR and not is_directory:
            raise _error(errno.ENOTDIR, path)
        kept = mask & (IN_ALL_EVENTS | _KEPT_FLAGS)
        wd = self._wd_by_inode.get(inode)
        if wd is not None:
            if mask & IN_MASK_CREATE:
                raise _error(errno.EEXIST, path)
            watch = self._watches[wd]
            watch.mask = watch.mask | kept if mask & IN_MASK_ADD else kept
            return wd
        self._last_wd += 1
        watch = _Watch(self, self._last_wd, inode, kept, path)
        self._watches[watch.wd] = watch
        self._wd_by_inode[inode] = watch.wd
        self._kernel._attach(watch)
        return watch.wd

    def rm_watch(self, wd: int) -> None:
        """Remove a watch and queue its ``IN_IGNORED``; raise ``EINVAL`` for an unknown one."""
        self._check_open()
        watch = self._watches.get(wd)
        if watch is None:
            raise _error(errno.EINVAL)
        self._kernel._destroy(watch)

    def read_events(self) -> list[RawEvent]:
        """Take the queued events that fit in one ``read(2)`` of ``inotify.READ_SIZE``."""
        self._check_open()
        events: list[RawEvent] = []
        size = 0
        while self._queue:
            event = self._queue[0]
            size += _event_size(event)
            if size > inotify.READ_SIZE and events:
                break
            events.append(self._queue.popleft())
            if event.mask & inotify.IN_Q_OVERFLOW:
                self._overflow_queued = False
        return events

    async def wait_readable(self) -> None:
        """Wait until an event is queued; raise ``trio.ClosedResourceError`` once closed."""
        self._check_open()
        if self._queue:
            await trio.lowlevel.checkpoint()
            return
        await self._readers.park()
        # A real reader sees the kernel's readiness only at trio's next I/O poll,
        # and one cancelled before that never returns from wait_readable. This
        # one was woken at once, so a cancellation that came in between wins here.
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.closed:
            raise trio.ClosedResourceError("the simulated inotify instance was closed")

    def close(self) -> None:
        """Drop every watch without queuing events, as closing the descriptor does."""
        if self.closed:
            return
        self.closed = True
        for watch in list(self._watches.values()):
            self._kernel._detach(watch)
        self._watches.clear()
        self._wd_by_inode.clear()
        self._queue.clear()
        self._readers.unpark_all()

    async def aclose(self) -> None:
        """Close the instance. Unlike a kernel instance, it waits for no grace period."""
        self.close()
        await trio.lowlevel.cancel_shielded_checkpoint()

    def _forget(self, watch: _Watch) -> None:
        del self._watches[watch.wd]
        del self._wd_by_inode[watch.inode]

    def _enqueue(self, wd: int, mask: int, cookie: int, name: str) -> str:
        """Queue one event by the kernel's overflow and merge rules; return the outcome."""
        queue = self._queue
        if len(queue) >= self._max_queued:
            if self._overflow_queued:
                return "dropped"
            self._overflow_queued = True
            queue.append(RawEvent(-1, inotify.IN_Q_OVERFLOW, 0, ""))
            outcome = "overflow"
        elif queue and _merges(queue[-1], wd, mask, name):
            return "merged"
        else:
            queue.append(RawEvent(wd, mask, cookie, name))
            outcome = "queued"
        if len(queue) == 1 and self._readers:
            self._readers.unpark_all()
        return outcome


def _merges(last: RawEvent, wd: int, mask: int, name: str) -> bool:
    """Tell whether the kernel folds a new event into the last queued one."""
    if last.mask & inotify.IN_IGNORED:
        return False
    return last.mask == mask and last.wd == wd and last.name == name


def _event_size(event: RawEvent) -> int:
    if not event.name:
        return _EVENT_SIZE
    length = len(os.fsencode(event.name)) + 1
    return _EVENT_SIZE + -(-length // _EVENT_SIZE) * _EVENT_SIZE


class InotifyKernel:
    """The kernel's side of the simulation: watches by inode, and the events of each change.

    Args:
        resolve: resolves a path to (inode, is a directory), raising ``OSError``.
        max_queued_events: the queue limit of each instance.
        trace: where to record queued events; None records nothing.
    """

    def __init__(
        self,
        resolve: Resolve,
        *,
        max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        trace: Trace | None = None,
    ) -> None:
        self.resolve = resolve
        self.max_queued_events = max_queued_events
        self.trace = trace
        self._watches_by_inode: dict[Inode, list[_Watch]] = {}
        self._instances = 0
        self._cookie = 0

    def open_instance(self) -> SimulatedInotify:
        """Create an instance, as ``inotify_init1`` does."""
        self._instances += 1
        return SimulatedInotify(self, self._instances, self.max_queued_events)

    def next_cookie(self) -> int:
        """Return the cookie of the next rename; every rename takes one, watched or not."""
        self._cookie += 1
        return self._cookie

    def inode_event(self, inode: Inode, mask: int, cookie: int = 0) -> None:
        """Queue an event on the inode's own watches only (link count, move, deletion)."""
        watches = self._watches_by_inode.get(inode)
        if watches:
            for watch in list(watches):
                self._deliver(watch, mask, cookie, "")

    def entry_event(self, directory: Inode, mask: int, name: str, cookie: int = 0) -> None:
        """Queue a directory entry event (create, delete, move) on the directory's watches."""
        watches = self._watches_by_inode.get(directory)
        if watches:
            for watch in list(watches):
                self._deliver(watch, mask, cookie, name)

    def file_event(
        self, directory: Inode, name: str, linked: bool, inode: Inode, mask: int
    ) -> None:
        """Queue an event on a file: on its directory's watches with ``name``, then on its own.

        ``linked`` is whether the directory entry still exists, because a directory
        watch with ``IN_EXCL_UNLINK`` ignores the events of unlinked entries.
        """
        parent_watches = self._watches_by_inode.get(directory)
        if parent_watches:
            for watch in list(parent_watches):
                if linked or not watch.mask & IN_EXCL_UNLINK:
                    self._deliver(watch, mask, 0, name)
        self.inode_event(inode, mask)

    def inode_removed(self, inode: Inode) -> None:
        """Queue ``IN_DELETE_SELF`` on the watches of a deleted inode, then drop them."""
        watches = self._watches_by_inode.get(inode)
        if not watches:
            return
        for watch in list(watches):
            self._deliver(watch, inotify.IN_DELETE_SELF, 0, "")
        for watch in list(self._watches_by_inode.get(inode, ())):
            self._destroy(watch)

    def _attach(self, watch: _Watch) -> None:
        self._watches_by_inode.setdefault(watch.inode, []).append(watch)

    def _detach(self, watch: _Watch) -> None:
        watches = self._watches_by_inode[watch.inode]
        watches.remove(watch)
        if not watches:
            del self._watches_by_inode[watch.inode]

    def _destroy(self, watch: _Watch) -> None:
        """Drop a watch and queue its ``IN_IGNORED``."""
        self._detach(watch)
        watch.instance._forget(watch)
        self._queue(watch, inotify.IN_IGNORED, 0, "")

    def _deliver(self, watch: _Watch, mask: int, cookie: int, name: str) -> None:
        if not watch.mask & mask & IN_ALL_EVENTS:
            return
        self._queue(watch, mask, cookie, name)
        if watch.mask & IN_ONESHOT:
            self._destroy(watch)

    def _queue(self, watch: _Watch, mask: int, cookie: int, name: str) -> None:
        outcome = watch.instance._enqueue(watch.wd, mask, cookie, name)
        if self.trace is not None:
            detail = f"instance {watch.instance.number} wd {watch.wd} ({watch.path})"
            detail += f" {inotify.mask_names(mask)}"
            if cookie:
                detail += f" cookie {cookie}"
            if name:
                detail += f" name {name!r}"
            self.trace.add(f"event-{outcome}", detail)
