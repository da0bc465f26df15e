"""The fake backend: pyfakefs files whose every change queues simulated inotify events.

``FakeOs`` offers the ``os`` functions stressor calls on cycle files. It keeps its
own descriptor table over pyfakefs, so ``dup`` shares one open file as in the
kernel. After each change it reports the change to the simulated kernel
(``stressor.backends.fake_inotify``), which queues these events:

=================================  ==============================================
operation                          events, in the kernel's order
=================================  ==============================================
``open``                           ``IN_CREATE`` on the directory if it created
                                   the file; ``IN_OPEN``; ``IN_MODIFY`` if
                                   ``O_TRUNC`` cut an existing file
``write``, ``truncate``            ``IN_MODIFY`` (none for an empty write)
``read``, ``pread``                ``IN_ACCESS`` when bytes were read
``chmod``                          ``IN_ATTRIB``
``close`` of the last descriptor   ``IN_CLOSE_WRITE`` or ``IN_CLOSE_NOWRITE``,
of an open file                    then ``IN_DELETE_SELF`` and ``IN_IGNORED`` if
                                   the file was unlinked through that entry
``unlink``                         ``IN_ATTRIB`` on the file, ``IN_DELETE_SELF``
                                   and ``IN_IGNORED`` if that was its last link
                                   and the entry is not open, ``IN_DELETE`` on
                                   the directory
``rename``, ``replace``            ``IN_MOVED_FROM`` and ``IN_MOVED_TO`` with one
                                   cookie, ``IN_ATTRIB`` on a replaced file,
                                   ``IN_MOVE_SELF`` on the moved one, then the
                                   replaced file's deletion as for ``unlink``
``symlink``, ``link``, ``mkdir``   ``IN_CREATE`` (``link``: ``IN_ATTRIB`` first)
``rmdir``                          ``IN_DELETE_SELF``, ``IN_IGNORED``, then
                                   ``IN_DELETE | IN_ISDIR`` on the parent
=================================  ==============================================

Not simulated: listing a directory (the kernel reports ``IN_OPEN``,
``IN_ACCESS`` and ``IN_CLOSE_NOWRITE`` with ``IN_ISDIR`` on it), ``IN_UNMOUNT``,
the limits on watches and instances, memory-mapped writes, and events caused by
other processes. Time stamps come from the trio clock, so they are virtual under
``MockClock``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import heapq
import os
import posixpath
import stat
from typing import Any, NamedTuple

import trio
from pyfakefs.fake_file import FakeDirectory, FakeFile
from pyfakefs.fake_filesystem import FakeFilesystem
from pyfakefs.fake_os import FakeOsModule

from stressor.backends.fake_inotify import (
    DEFAULT_MAX_QUEUED_EVENTS,
    IN_ISDIR,
    Inode,
    InotifyKernel,
    SimulatedInotify,
    Trace,
)
from stressor.watchers import inotify

# Wall clock of the fake backend at trio time 0: 2026-01-01T00:00:00Z.
FAKE_EPOCH = 1_767_225_600.0

# Functions of the real os module that touch no file and are safe to pass through.
_PURE_FUNCTIONS = frozenset(
    {"fspath", "fsencode", "fsdecode", "strerror", "getpid", "cpu_count", "urandom"}
)

_FIRST_FD = 3

# Linux follows at most 40 symlinks in one lookup, then fails with ELOOP.
_MAX_SYMLINKS = 40

# open() flags the fast path handles; any other flag goes to pyfakefs.
_FAST_OPEN_FLAGS = (
    os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_CREAT | os.O_EXCL | os.O_TRUNC
)


def fake_time() -> float:
    """Return the fake backend's wall clock: ``FAKE_EPOCH`` plus the trio clock."""
    try:
        return FAKE_EPOCH + trio.current_time()
    except RuntimeError:
        return FAKE_EPOCH


@dataclasses.dataclass(slots=True, eq=False)
class _Entry:
    """A directory entry that was opened, like the kernel's dentry.

    An open file keeps the entry it was opened through: a rename moves the entry,
    an unlink only marks it unlinked. Events on the open file name that entry.
    """

    directory: Inode
    name: str
    linked: bool = True
    users: int = 0


@dataclasses.dataclass(slots=True, eq=False)
class _OpenFile:
    """An open file description, shared by a descriptor and its duplicates.

    Reads and writes act on the pyfakefs inode's contents directly. pyfakefs's own
    file wrappers keep a buffer per handle, which goes stale when another handle
    truncates the file.
    """

    inode: Any
    entry: _Entry
    readable: bool
    writable: bool
    append: bool
    is_directory: bool
    offset: int = 0
    references: int = 1


def _is_directory(inode: Inode) -> bool:
    return stat.S_ISDIR(getattr(inode, "st_mode", 0))


def _is_symlink(inode: Inode) -> bool:
    return stat.S_ISLNK(getattr(inode, "st_mode", 0))


class _Found(NamedTuple):
    """A path looked up: its directory (as a resolved path and an inode), name and entry."""

    directory_path: str
    directory: Any
    name: str
    entry: Any
    """The inode the name refers to, or None when the name does not exist."""

    @property
    def path(self) -> str:
        """Return the resolved path of the entry."""
        return f"{self.directory_path.rstrip('/')}/{self.name}"


class _SlowPath(Exception):
    """A lookup that the fast path leaves to pyfakefs, which resolves or rejects it."""


class _FakePath:
    """``os.path`` on the fake files: ``FakeOs``'s fast lookups, pyfakefs for the rest."""

    def __init__(self, fake_os: FakeOs, pyfakefs_path: Any) -> None:
        self._os = fake_os
        self._slow = pyfakefs_path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._slow, name)

    def exists(self, path: str) -> bool:
        """Tell whether ``path`` names an existing file, following symlinks."""
        found = self._os._find(path, follow=True)
        return bool(self._slow.exists(path)) if found is None else found.entry is not None

    def lexists(self, path: str) -> bool:
        """Tell whether ``path`` exists, a dangling symlink included."""
        found = self._os._find(path, follow=False)
        return bool(self._slow.lexists(path)) if found is None else found.entry is not None

    def islink(self, path: str) -> bool:
        """Tell whether ``path`` is a symlink."""
        found = self._os._find(path, follow=False)
        if found is None:
            return bool(self._slow.islink(path))
        return found.entry is not None and _is_symlink(found.entry)

    def isdir(self, path: str) -> bool:
        """Tell whether ``path`` names a directory, following symlinks."""
        found = self._os._find(path, follow=True)
        if found is None:
            return bool(self._slow.isdir(path))
        return found.entry is not None and _is_directory(found.entry)

    def realpath(self, path: str) -> str:
        """Return ``path`` with every symlink resolved."""
        found = self._os._find(path, follow=True)
        return str(self._slow.realpath(path)) if found is None else found.path


class FakeOs:
    """The ``os`` functions stressor uses, on a pyfakefs file system, raising events.

    Errors are ``OSError`` with the errno and path the kernel would give, as
    pyfakefs raises them. Constants and the pure functions in ``_PURE_FUNCTIONS``
    come from the real ``os`` module; any other function raises ``AttributeError``
    instead of quietly touching real files.
    """

    def __init__(self, filesystem: FakeFilesystem, kernel: InotifyKernel, trace: Trace | None):
        self._fs = filesystem
        self._fake = FakeOsModule(filesystem)
        self._kernel = kernel
        self._trace = trace
        self.path = _FakePath(self, self._fake.path)
        self._files: dict[int, _OpenFile] = {}
        self._free_fds: list[int] = []
        self._next_fd = _FIRST_FD
        self._entries: dict[tuple[Inode, str], _Entry] = {}

    def __getattr__(self, name: str) -> Any:
        value = getattr(os, name)
        if callable(value) and name not in _PURE_FUNCTIONS:
            raise AttributeError(
                f"os.{name} is not simulated on the fake backend; use the real backend"
                " for a follower that needs it"
            )
        return value

    # Bookkeeping.

    def _note(self, operation: str, detail: str) -> None:
        if self._trace is not None:
            self._trace.add("op", f"{operation} {detail}")

    def _find(self, path: str, *, follow: bool) -> _Found | None:
        """Look ``path`` up by walking directory entries; None leaves the lookup to pyfakefs.

        pyfakefs takes about 30 µs to resolve a path, this walk a few. The walk
        handles absolute paths, relative ones (the fake working directory is the
        root) and symlinks. It gives up on "..", a missing or non-directory
        component and symlink loops, for which pyfakefs raises the kernel's error.
        """
        try:
            return self._walk(os.fspath(path), follow, 0)
        except _SlowPath:
            return None

    def _walk(self, path: str, follow: bool, links: int) -> _Found:
        parts = [part for part in path.split("/") if part and part != "."]
        if not parts or ".." in parts:
            raise _SlowPath
        directory: Any = self._fs.root
        directory_path = ""
        for part in parts[:-1]:
            entry = directory.entries.get(part)
            if entry is not None and _is_symlink(entry):
                links += 1
                found = self._walk(self._link_target(directory_path, entry, links), True, links)
                entry, entry_path = found.entry, found.path
            else:
                entry_path = f"{directory_path}/{part}"
            if entry is None or not _is_directory(entry):
                raise _SlowPath
            directory, directory_path = entry, entry_path
        name = parts[-1]
        entry = directory.entries.get(name)
        if follow and entry is not None and _is_symlink(entry):
            links += 1
            return self._walk(self._link_target(directory_path, entry, links), True, links)
        return _Found(directory_path or "/", directory, name, entry)

    @staticmethod
    def _link_target(directory_path: str, link: Any, links: int) -> str:
        target = link.contents
        if links > _MAX_SYMLINKS or not target:
            raise _SlowPath
        return target if target.startswith("/") else f"{directory_path}/{target}"

    def _open_file(self, fd: int) -> _OpenFile:
        try:
            return self._files[fd]
        except (KeyError, TypeError):
            raise OSError(errno.EBADF, os.strerror(errno.EBADF)) from None

    def _new_fd(self, open_file: _OpenFile) -> int:
        if self._free_fds:
            fd = heapq.heappop(self._free_fds)
        else:
            fd = self._next_fd
            self._next_fd += 1
        self._files[fd] = open_file
        return fd

    def _locate(self, path: str, *, follow: bool) -> tuple[Inode, str]:
        """Return (directory inode, entry name) of ``path``; ``follow`` resolves a final symlink."""
        found = self._find(path, follow=follow)
        if found is not None:
            return found.directory, found.name
        absolute = self._fs.absnormpath(os.fspath(path))
        if follow:
            absolute = self._fs.resolve_path(absolute)
        directory, name = posixpath.split(absolute)
        return self._fs.resolve(directory or "/"), name

    def _entry(self, directory: Inode, name: str) -> _Entry:
        key = (directory, name)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(directory, name)
        return entry

    def _unlink_entry(self, directory: Inode, name: str) -> _Entry | None:
        entry = self._entries.pop((directory, name), None)
        if entry is not None:
            entry.linked = False
        return entry

    def _file_event(self, open_file: _OpenFile, mask: int) -> None:
        entry = open_file.entry
        if open_file.is_directory:
            mask |= IN_ISDIR
        self._kernel.file_event(entry.directory, entry.name, entry.linked, open_file.inode, mask)

    def _path_event(self, path: str, mask: int) -> None:
        directory, name = self._locate(path, follow=True)
        inode = self._fs.resolve(path)
        if _is_directory(inode):
            mask |= IN_ISDIR
        self._kernel.file_event(directory, name, True, inode, mask)

    def _removed_if_last(self, inode: Inode, entry: _Entry | None) -> None:
        """Queue the inode's deletion when its last link is gone and the entry is not open."""
        if getattr(inode, "st_nlink", 1) == 0 and (entry is None or entry.users == 0):
            self._kernel.inode_removed(inode)

    @staticmethod
    def _touch(inode: Inode) -> None:
        now = fake_time()
        inode.st_mtime = now  # type: ignore[attr-defined]
        inode.st_ctime = now  # type: ignore[attr-defined]

    # Descriptors.

    def open(self, path: str, flags: int, mode: int = 0o777) -> int:
        """Open ``path`` as ``os.open`` does; return a descriptor of this fake ``os``."""
        opened = self._open_fast(path, flags, mode)
        if opened is None:
            creating = bool(flags & os.O_CREAT) and not self.path.exists(path)
            # pyfakefs checks the flags and the path, creates or truncates the file
            # and raises the kernel's errors; its handle is not needed afterwards.
            handle = self._fake.open(path, flags, mode)
            inode = self._fs.get_open_file(handle).get_object()
            self._fake.close(handle)
            directory, name = self._locate(path, follow=True)
        else:
            inode, directory, name, creating = opened
        entry = self._entry(directory, name)
        entry.users += 1
        access = flags & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
        open_file = _OpenFile(
            inode,
            entry,
            readable=access != os.O_WRONLY,
            writable=access != os.O_RDONLY,
            append=bool(flags & os.O_APPEND),
            is_directory=_is_directory(inode),
        )
        fd = self._new_fd(open_file)
        self._note("open", f"{path} fd {fd}")
        if creating:
            self._touch(inode)
            self._kernel.entry_event(directory, inotify.IN_CREATE, name)
        self._file_event(open_file, inotify.IN_OPEN)
        if flags & os.O_TRUNC and open_file.writable and not creating:
            self._touch(inode)
            self._file_event(open_file, inotify.IN_MODIFY)
        return fd

    def _open_fast(self, path: str, flags: int, mode: int) -> tuple[Any, Any, str, bool] | None:
        """Open or create a regular file without pyfakefs; None when pyfakefs must do it.

        Returns (inode, directory inode, name, whether it was created).
        """
        found = self._find(path, follow=True)
        if found is None or flags & ~_FAST_OPEN_FLAGS:
            return None
        entry = found.entry
        if entry is None:
            if not flags & os.O_CREAT:
                return None
            created = FakeFile(
                found.name, stat.S_IFREG | (mode & ~self._fs.umask & 0o7777), filesystem=self._fs
            )
            found.directory.add_entry(created)
            return created, found.directory, found.name, True
        if not stat.S_ISREG(entry.st_mode) or flags & os.O_CREAT and flags & os.O_EXCL:
            return None
        if flags & os.O_TRUNC and flags & (os.O_WRONLY | os.O_RDWR):
            entry.set_contents(b"")
        return entry, found.directory, found.name, False

    def close(self, fd: int) -> None:
        """Close a descriptor; closing the last one of an open file raises the close event."""
        open_file = self._open_file(fd)
        del self._files[fd]
        heapq.heappush(self._free_fds, fd)
        self._note("close", f"fd {fd}")
        open_file.references -= 1
        if open_file.references:
            return
        mask = inotify.IN_CLOSE_WRITE if open_file.writable else inotify.IN_CLOSE_NOWRITE
        self._file_event(open_file, mask)
        entry = open_file.entry
        entry.users -= 1
        if not entry.linked:
            self._removed_if_last(open_file.inode, entry)

    def dup(self, fd: int) -> int:
        """Return a new descriptor for the same open file (shared offset)."""
        open_file = self._open_file(fd)
        open_file.references += 1
        return self._new_fd(open_file)

    @staticmethod
    def _contents(open_file: _OpenFile) -> bytes:
        if open_file.is_directory:
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        contents: bytes | None = open_file.inode.byte_contents
        return contents or b""

    def read(self, fd: int, length: int) -> bytes:
        """Read up to ``length`` bytes at the descriptor's offset."""
        open_file = self._open_file(fd)
        if not open_file.readable:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        data = self._contents(open_file)[open_file.offset : open_file.offset + length]
        open_file.offset += len(data)
        if data:
            self._file_event(open_file, inotify.IN_ACCESS)
        return data

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        """Read up to ``length`` bytes at ``offset``, leaving the descriptor's offset alone."""
        open_file = self._open_file(fd)
        if not open_file.readable:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        if offset < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        data = self._contents(open_file)[offset : offset + length]
        if data:
            self._file_event(open_file, inotify.IN_ACCESS)
        return data

    def write(self, fd: int, data: bytes) -> int:
        """Write ``data`` at the offset (at the end with ``O_APPEND``); return its length."""
        open_file = self._open_file(fd)
        if not open_file.writable:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        data = bytes(data)
        if not data:
            return 0
        contents = self._contents(open_file)
        start = len(contents) if open_file.append else open_file.offset
        before = contents[:start].ljust(start, b"\0")
        open_file.inode.set_contents(before + data + contents[start + len(data) :])
        open_file.offset = start + len(data)
        self._note("write", f"fd {fd} {len(data)} bytes")
        self._touch(open_file.inode)
        self._file_event(open_file, inotify.IN_MODIFY)
        return len(data)

    def lseek(self, fd: int, position: int, whence: int) -> int:
        """Move the descriptor's offset; return the new offset."""
        open_file = self._open_file(fd)
        if whence == os.SEEK_SET:
            offset = position
        elif whence == os.SEEK_CUR:
            offset = open_file.offset + position
        elif whence == os.SEEK_END:
            offset = len(self._contents(open_file)) + position
        else:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        if offset < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        open_file.offset = offset
        return offset

    def fstat(self, fd: int) -> Any:
        """Return the status of the open file, which may have no name any more."""
        return self._open_file(fd).inode.stat_result.copy()

    def ftruncate(self, fd: int, length: int) -> None:
        """Cut or extend the open file to ``length`` bytes."""
        open_file = self._open_file(fd)
        if not open_file.writable or open_file.is_directory:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        open_file.inode.size = length
        self._note("ftruncate", f"fd {fd} to {length}")
        self._touch(open_file.inode)
        self._file_event(open_file, inotify.IN_MODIFY)

    def fsync(self, fd: int) -> None:
        """Do nothing but check the descriptor: fake files have no disk to sync."""
        self._open_file(fd)

    # Paths.

    def stat(self, path: str) -> Any:
        """Return the status of the file ``path`` names, following symlinks."""
        found = self._find(path, follow=True)
        if found is None or found.entry is None:
            return self._fake.stat(path)
        return found.entry.stat_result.copy()

    def lstat(self, path: str) -> Any:
        """Return the status of ``path`` itself."""
        found = self._find(path, follow=False)
        if found is None or found.entry is None:
            return self._fake.lstat(path)
        return found.entry.stat_result.copy()

    def readlink(self, path: str) -> str:
        """Return the target of the symlink ``path``."""
        target: str = self._fake.readlink(path)
        return target

    def listdir(self, path: str) -> list[str]:
        """Return the names in a directory (no events: see the module documentation)."""
        found = self._find(path, follow=True)
        if found is not None and _is_directory(found.entry):
            return list(found.entry.entries)
        names: list[str] = self._fake.listdir(path)
        return names

    def truncate(self, path: str, length: int) -> None:
        """Cut or extend the file ``path`` names to ``length`` bytes."""
        self._fake.truncate(path, length)
        self._note("truncate", f"{path} to {length}")
        self._touch(self._fs.resolve(path))
        self._path_event(path, inotify.IN_MODIFY)

    def chmod(self, path: str, mode: int) -> None:
        """Change the mode of the file ``path`` names."""
        self._fake.chmod(path, mode)
        self._note("chmod", f"{path} {mode:o}")
        self._path_event(path, inotify.IN_ATTRIB)

    def unlink(self, path: str) -> None:
        """Remove the directory entry ``path``."""
        found = self._find(path, follow=False)
        if found is not None and found.entry is not None and not _is_directory(found.entry):
            directory, name, inode = found.directory, found.name, found.entry
            directory.remove_entry(name)
        else:
            directory, name = self._locate(path, follow=False)
            inode = self._fs.lresolve(path)
            self._fake.unlink(path)
        self._note("unlink", path)
        entry = self._unlink_entry(directory, name)
        self._kernel.inode_event(inode, inotify.IN_ATTRIB)
        self._removed_if_last(inode, entry)
        self._kernel.entry_event(directory, inotify.IN_DELETE, name)

    remove = unlink

    def replace(self, source: str, destination: str) -> None:
        """Rename ``source`` to ``destination``, replacing a file there atomically."""
        origin = self._find(source, follow=False)
        target = self._find(destination, follow=False)
        if (
            origin is not None
            and target is not None
            and origin.entry is not None
            and not _is_directory(origin.entry)
            and not (target.entry is not None and _is_directory(target.entry))
        ):
            from_directory, from_name, moved = origin.directory, origin.name, origin.entry
            to_directory, to_name, replaced = target.directory, target.name, target.entry
            if replaced is not moved:
                # The steps of pyfakefs's own rename, in its order.
                from_directory.remove_entry(from_name, recursive=False)
                if replaced is not None:
                    to_directory.remove_entry(to_name)
                moved.name = to_name
                to_directory.add_entry(moved)
        else:
            from_directory, from_name = self._locate(source, follow=False)
            moved = self._fs.lresolve(source)
            to_directory, to_name = self._locate(destination, follow=False)
            replaced = getattr(to_directory, "entries", {}).get(to_name)
            self._fake.replace(source, destination)
        self._note("rename", f"{source} -> {destination}")
        if replaced is moved:
            # Two links to one inode: rename(2) does nothing and reports nothing.
            return
        cookie = self._kernel.next_cookie()
        isdir = IN_ISDIR if _is_directory(moved) else 0
        self._kernel.entry_event(from_directory, inotify.IN_MOVED_FROM | isdir, from_name, cookie)
        self._kernel.entry_event(to_directory, inotify.IN_MOVED_TO | isdir, to_name, cookie)
        replaced_entry = self._unlink_entry(to_directory, to_name)
        moved_entry = self._entries.pop((from_directory, from_name), None)
        if moved_entry is not None:
            moved_entry.directory, moved_entry.name = to_directory, to_name
            self._entries[(to_directory, to_name)] = moved_entry
        if replaced is not None:
            self._kernel.inode_event(replaced, inotify.IN_ATTRIB)
        self._kernel.inode_event(moved, inotify.IN_MOVE_SELF)
        if replaced is not None:
            self._removed_if_last(replaced, replaced_entry)

    rename = replace

    def symlink(self, source: str, destination: str) -> None:
        """Create the symlink ``destination`` pointing at ``source``."""
        self._fake.symlink(source, destination)
        self._note("symlink", f"{destination} -> {source}")
        directory, name = self._locate(destination, follow=False)
        self._kernel.entry_event(directory, inotify.IN_CREATE, name)

    def link(self, source: str, destination: str) -> None:
        """Create the hard link ``destination`` to the file ``source``."""
        self._fake.link(source, destination)
        self._note("link", f"{destination} -> {source}")
        self._kernel.inode_event(self._fs.lresolve(destination), inotify.IN_ATTRIB)
        directory, name = self._locate(destination, follow=False)
        self._kernel.entry_event(directory, inotify.IN_CREATE, name)

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        """Create the directory ``path``."""
        found = self._find(path, follow=False)
        if found is not None and found.entry is None:
            directory, name = found.directory, found.name
            permissions = mode & ~self._fs.umask & 0o7777
            directory.add_entry(FakeDirectory(name, permissions, filesystem=self._fs))
        else:
            self._fake.mkdir(path, mode)
            directory, name = self._locate(path, follow=False)
        self._note("mkdir", path)
        self._kernel.entry_event(directory, inotify.IN_CREATE | IN_ISDIR, name)

    def makedirs(self, path: str, mode: int = 0o777, exist_ok: bool = False) -> None:
        """Create ``path`` and its missing parents, one ``mkdir`` each."""
        parent = posixpath.dirname(posixpath.normpath(path))
        if parent and parent != path and not self._fake.path.exists(parent):
            self.makedirs(parent, mode, exist_ok=True)
        if exist_ok and self._fake.path.isdir(path):
            return
        self.mkdir(path, mode)

    def rmdir(self, path: str) -> None:
        """Remove the empty directory ``path``."""
        found = self._find(path, follow=False)
        entry: Any = None if found is None else found.entry
        if found is not None and _is_directory(entry) and not entry.entries:
            directory, name, inode = found.directory, found.name, entry
            directory.remove_entry(name)
        else:
            directory, name = self._locate(path, follow=False)
            inode = self._fs.lresolve(path)
            self._fake.rmdir(path)
        self._note("rmdir", path)
        self._unlink_entry(directory, name)
        self._kernel.inode_removed(inode)
        self._kernel.entry_event(directory, inotify.IN_DELETE | IN_ISDIR, name)

    @property
    def open_descriptors(self) -> int:
        """Return how many descriptors are open, for tests of descriptor leaks."""
        return len(self._files)


class FakeBackend:
    """Fake files (pyfakefs) with a simulated inotify, so that no real file is touched.

    Args:
        max_queued_events: the queue limit of each inotify instance.
        record: keep a ``Trace`` of file operations and queued events in ``trace``.

    Attributes:
        filesystem: the pyfakefs file system.
        kernel: the simulated inotify kernel side.
        trace: the record of operations and events, or None.
    """

    name = "fake"
    counts_resources = False

    def __init__(
        self, *, max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS, record: bool = False
    ) -> None:
        self.filesystem = FakeFilesystem(path_separator="/")
        # pyfakefs shuffles directory listings with the global random source by
        # default, but a replay must list (and so remove) entries in one order.
        self.filesystem.shuffle_listdir_results = False
        self.trace = Trace() if record else None
        self.kernel = InotifyKernel(
            self._resolve, max_queued_events=max_queued_events, trace=self.trace
        )
        self._os = FakeOs(self.filesystem, self.kernel, self.trace)
        self._temp_dirs = 0
        self.filesystem.create_dir("/tmp", perm_bits=0o1777)

    @property
    def os(self) -> FakeOs:
        """Return the fake ``os`` functions."""
        return self._os

    def _resolve(self, path: str, follow: bool) -> tuple[Inode, bool]:
        found = self._os._find(path, follow=follow)
        inode = None if found is None else found.entry
        if inode is None:
            inode = self.filesystem.resolve(path, follow_symlinks=follow)
        return inode, _is_directory(inode)

    def open_inotify(self) -> SimulatedInotify:
        """Create a simulated inotify instance."""
        return self.kernel.open_instance()

    def copyfile(self, source: str, destination: str) -> None:
        """Copy as ``shutil.copyfile`` does on Linux, with the same events.

        Python opens the source, creates or truncates the destination, copies with
        one ``sendfile(2)`` (``IN_ACCESS`` on the source, then ``IN_MODIFY`` on the
        destination, none for an empty file) and closes the destination first.
        """
        fake = self._os
        source_fd = fake.open(source, os.O_RDONLY | os.O_CLOEXEC)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
            destination_fd = fake.open(destination, flags, 0o666)
            try:
                size = fake.fstat(source_fd).st_size
                data = fake.read(source_fd, max(size, 1))
                if data:
                    fake.write(destination_fd, data)
            finally:
                fake.close(destination_fd)
        finally:
            fake.close(source_fd)

    def rmtree(self, path: str) -> None:
        """Remove a directory tree entry by entry, ignoring errors."""
        fake = self._os
        try:
            names = fake.listdir(path)
        except OSError:
            return
        for name in names:
            child = posixpath.join(path, name)
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(fake.lstat(child).st_mode):
                    self.rmtree(child)
                else:
                    fake.unlink(child)
        with contextlib.suppress(OSError):
            fake.rmdir(path)

    def make_temp_dir(self, prefix: str) -> str:
        """Create ``/tmp/PREFIXN`` (mode 0700), with N counting up, so replays reuse names."""
        self._temp_dirs += 1
        path = f"/tmp/{prefix}{self._temp_dirs}"
        self._os.mkdir(path, 0o700)
        return path

    def utc_now(self) -> datetime.datetime:
        """Return ``FAKE_EPOCH`` plus the trio clock, so replayed lines are byte for byte equal."""
        return datetime.datetime.fromtimestamp(fake_time(), datetime.UTC)
