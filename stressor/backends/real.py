"""The real backend: the ``os`` module, kernel inotify and trio's wait on the descriptor."""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

import trio

from stressor.watchers import inotify

if TYPE_CHECKING:
    from stressor.backends import OsModule


class KernelInotify:
    """A kernel inotify instance, non-blocking and close-on-exec."""

    def __init__(self) -> None:
        self.fd = inotify.init()

    def add_watch(self, path: str, mask: int) -> int:
        """Call ``inotify_add_watch``; raise ``OSError`` as the kernel reports it."""
        return inotify.add_watch(self.fd, path, mask)

    def rm_watch(self, wd: int) -> None:
        """Call ``inotify_rm_watch``; the kernel then queues ``IN_IGNORED``."""
        inotify.rm_watch(self.fd, wd)

    def read_events(self) -> list[inotify.RawEvent]:
        """Read the queued events without blocking."""
        return inotify.read_events(self.fd)

    async def wait_readable(self) -> None:
        """Wait until the descriptor is readable, in trio's I/O manager."""
        await trio.lowlevel.wait_readable(self.fd)

    async def aclose(self) -> None:
        """Close the descriptor in a worker thread (``inotify.close`` explains why)."""
        await inotify.close(self.fd)


class RealBackend:
    """Real files in the operating system's file systems, watched with kernel inotify."""

    name = "real"
    counts_resources = True

    @property
    def os(self) -> OsModule:
        """Return the ``os`` module itself."""
        return os

    def open_inotify(self) -> KernelInotify:
        """Create a kernel inotify instance."""
        return KernelInotify()

    def copyfile(self, source: str, destination: str) -> None:
        """Copy with ``shutil.copyfile`` (``sendfile(2)`` on Linux)."""
        shutil.copyfile(source, destination)

    def rmtree(self, path: str) -> None:
        """Remove the tree with ``shutil.rmtree``, ignoring errors."""
        shutil.rmtree(path, ignore_errors=True)

    def make_temp_dir(self, prefix: str) -> str:
        """Create the directory in ``$TMPDIR``; an invalid ``$TMPDIR`` raises ``OSError``.

        It does not fall back to /tmp, as ``tempfile.gettempdir()`` would, because
        that would change the file system under test.
        """
        return tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("TMPDIR") or None)

    def utc_now(self) -> datetime.datetime:
        """Return the system's wall-clock time."""
        return datetime.datetime.now(datetime.UTC)
