"""Bind the Linux inotify system calls and decode the events the kernel returns.

Only the system calls and the event layout are here. Everything that waits for
events lives in the watchers built on top.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import errno
import os
import struct

import trio

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# The mask fsnotify (v1.2 to v1.4) asks for when a caller adds a plain file watch.
FSNOTIFY_MASK = (
    IN_MOVED_TO
    | IN_MOVED_FROM
    | IN_CREATE
    | IN_ATTRIB
    | IN_MODIFY
    | IN_MOVE_SELF
    | IN_DELETE
    | IN_DELETE_SELF
)

_MASK_NAMES = {
    IN_ACCESS: "IN_ACCESS",
    IN_MODIFY: "IN_MODIFY",
    IN_ATTRIB: "IN_ATTRIB",
    IN_CLOSE_WRITE: "IN_CLOSE_WRITE",
    IN_CLOSE_NOWRITE: "IN_CLOSE_NOWRITE",
    IN_OPEN: "IN_OPEN",
    IN_MOVED_FROM: "IN_MOVED_FROM",
    IN_MOVED_TO: "IN_MOVED_TO",
    IN_CREATE: "IN_CREATE",
    IN_DELETE: "IN_DELETE",
    IN_DELETE_SELF: "IN_DELETE_SELF",
    IN_MOVE_SELF: "IN_MOVE_SELF",
    IN_UNMOUNT: "IN_UNMOUNT",
    IN_Q_OVERFLOW: "IN_Q_OVERFLOW",
    IN_IGNORED: "IN_IGNORED",
    IN_ISDIR: "IN_ISDIR",
}

# struct inotify_event: int wd; uint32_t mask, cookie, len; char name[len].
_HEADER = struct.Struct("iIII")

# Large enough for many events with names of NAME_MAX bytes.
READ_SIZE = 64 * 1024

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_init1.restype = ctypes.c_int
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_add_watch.restype = ctypes.c_int
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.inotify_rm_watch.restype = ctypes.c_int


@dataclasses.dataclass(frozen=True, slots=True)
class RawEvent:
    """One ``struct inotify_event`` as the kernel queued it."""

    wd: int
    mask: int
    cookie: int
    name: str

    def describe(self) -> str:
        """Return the mask as ``IN_MODIFY|IN_IGNORED`` style text."""
        return mask_names(self.mask)


def mask_names(mask: int) -> str:
    """Return the names of the bits set in an inotify mask, joined by ``|``."""
    names = [name for bit, name in _MASK_NAMES.items() if mask & bit]
    return "|".join(names) or "0"


def _raise_errno(call: str, path: str | None = None) -> None:
    code = ctypes.get_errno()
    raise OSError(code, f"{call} failed: {os.strerror(code)}", path)


def init() -> int:
    """Create a non-blocking, close-on-exec inotify instance and return its descriptor."""
    fd: int = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        _raise_errno("inotify_init1")
    return fd


def add_watch(fd: int, path: str, mask: int) -> int:
    """Add or replace the watch on ``path`` and return its watch descriptor."""
    wd: int = _libc.inotify_add_watch(fd, os.fsencode(path), mask)
    if wd < 0:
        _raise_errno("inotify_add_watch", path)
    return wd


def rm_watch(fd: int, wd: int) -> None:
    """Remove a watch. The kernel then queues ``IN_IGNORED`` for ``wd``."""
    if _libc.inotify_rm_watch(fd, wd) < 0:
        _raise_errno("inotify_rm_watch")


async def close(fd: int) -> None:
    """Close an inotify descriptor in a worker thread, even when the caller is cancelled.

    Closing an inotify instance waits for an SRCU grace period in the kernel, 8 to
    20 ms as measured on Linux 6.18; done on the event loop it would stall every
    other cycle for that long.
    """
    with trio.CancelScope(shield=True):
        await trio.to_thread.run_sync(os.close, fd)


def parse_events(buffer: bytes) -> list[RawEvent]:
    """Decode a buffer returned by ``read(2)`` on an inotify descriptor."""
    events = []
    offset = 0
    while offset + _HEADER.size <= len(buffer):
        wd, mask, cookie, length = _HEADER.unpack_from(buffer, offset)
        offset += _HEADER.size
        name = buffer[offset : offset + length].rstrip(b"\0").decode(errors="surrogateescape")
        offset += length
        events.append(RawEvent(wd, mask, cookie, name))
    return events


def read_events(fd: int) -> list[RawEvent]:
    """Read every queued event without blocking; return an empty list when none is queued."""
    try:
        buffer = os.read(fd, READ_SIZE)
    except BlockingIOError:
        return []
    except OSError as error:
        if error.errno == errno.EINTR:
            return []
        raise
    return parse_events(buffer)


def count_instances() -> int:
    """Count this process's open inotify instances; other processes are not seen."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        count += target == "anon_inode:inotify"
    return count
