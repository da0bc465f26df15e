"""File system backends: real files with kernel inotify, or fake files with a simulated inotify.

Everything that touches a cycle's files or watches them goes through the current
backend: code calls ``current_backend().os`` in place of the ``os`` module and
``current_backend().open_inotify()`` in place of ``inotify_init1``. The writer, the
rotations, the cycle, ``LineReader``, the watchers and the built-in followers do
this, so they run unchanged on either backend.

The backend lives in a ``contextvars.ContextVar``. trio copies the context into
every task it spawns, so a cycle's follower, writer and fault tasks all see the
backend that was current where the cycle started; ``use_backend`` sets it for a
block. Without one, the real backend is current.

- ``real``: the ``os`` module, kernel inotify and ``trio.lowlevel.wait_readable``.
- ``fake``: a pyfakefs file system, with a simulated inotify that queues the
  events the kernel would (``stressor.backends.fake_inotify``). Nothing waits on a
  file descriptor, so trio's ``MockClock`` drives a cycle in virtual time and a
  replay is exact (``stressor.backends.virtual_time``).

Followers written outside stressor that call ``os`` themselves reach the fake files
through ``redirect_os``; see its documentation for what it covers.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import functools
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from stressor.backends.real import RealBackend
from stressor.watchers.inotify import RawEvent

BACKENDS = ("real", "fake")


class StatResult(Protocol):
    """The fields of ``os.stat_result`` that stressor reads."""

    @property
    def st_mode(self) -> int: ...

    @property
    def st_ino(self) -> int: ...

    @property
    def st_dev(self) -> int: ...

    @property
    def st_nlink(self) -> int: ...

    @property
    def st_size(self) -> int: ...

    @property
    def st_mtime_ns(self) -> int: ...


class PathModule(Protocol):
    """The functions of ``os.path`` that stressor calls on cycle files."""

    def exists(self, path: str) -> bool: ...

    def lexists(self, path: str) -> bool: ...

    def islink(self, path: str) -> bool: ...

    def realpath(self, path: str) -> str: ...

    def abspath(self, path: str) -> str: ...


class OsModule(Protocol):
    """The functions of the ``os`` module that stressor calls on cycle files.

    The real backend hands out the ``os`` module itself; constants such as
    ``os.O_RDONLY`` are read from the real module everywhere.
    """

    @property
    def path(self) -> PathModule: ...

    def open(self, path: str, flags: int, mode: int = 0o777) -> int: ...

    def close(self, fd: int) -> None: ...

    def dup(self, fd: int) -> int: ...

    def read(self, fd: int, length: int) -> bytes: ...

    def pread(self, fd: int, length: int, offset: int) -> bytes: ...

    def write(self, fd: int, data: bytes) -> int: ...

    def lseek(self, fd: int, position: int, whence: int) -> int: ...

    def fstat(self, fd: int) -> StatResult: ...

    def ftruncate(self, fd: int, length: int) -> None: ...

    def stat(self, path: str) -> StatResult: ...

    def lstat(self, path: str) -> StatResult: ...

    def truncate(self, path: str, length: int) -> None: ...

    def chmod(self, path: str, mode: int) -> None: ...

    def unlink(self, path: str) -> None: ...

    def rename(self, source: str, destination: str) -> None: ...

    def replace(self, source: str, destination: str) -> None: ...

    def symlink(self, source: str, destination: str) -> None: ...

    def link(self, source: str, destination: str) -> None: ...

    def readlink(self, path: str) -> str: ...

    def mkdir(self, path: str, mode: int = 0o777) -> None: ...

    def makedirs(self, path: str, mode: int = 0o777, exist_ok: bool = False) -> None: ...

    def rmdir(self, path: str) -> None: ...

    def listdir(self, path: str) -> list[str]: ...


class InotifyInstance(Protocol):
    """One inotify instance: what ``inotify_init1`` returns, with its calls as methods."""

    def add_watch(self, path: str, mask: int) -> int:
        """Add or replace the watch on ``path``; return its watch descriptor."""
        ...

    def rm_watch(self, wd: int) -> None:
        """Remove a watch; ``IN_IGNORED`` follows for it."""
        ...

    def read_events(self) -> list[RawEvent]:
        """Return the queued events without blocking; an empty list when none is queued."""
        ...

    async def wait_readable(self) -> None:
        """Wait until an event is queued."""
        ...

    async def aclose(self) -> None:
        """Close the instance and drop its watches, even when the caller is cancelled."""
        ...


class Backend(Protocol):
    """The file system of a cycle's files and the inotify that watches them."""

    @property
    def name(self) -> str:
        """``real`` or ``fake``."""
        ...

    @property
    def os(self) -> OsModule:
        """The ``os`` functions to call on the cycle's files."""
        ...

    @property
    def counts_resources(self) -> bool:
        """Whether /proc shows this backend's descriptors and watches (for leak checks)."""
        ...

    def open_inotify(self) -> InotifyInstance:
        """Create an inotify instance."""
        ...

    def copyfile(self, source: str, destination: str) -> None:
        """Copy a file's contents, as ``shutil.copyfile`` does."""
        ...

    def rmtree(self, path: str) -> None:
        """Remove a directory tree, ignoring errors."""
        ...

    def make_temp_dir(self, prefix: str) -> str:
        """Create a private (0700) directory for a run's cycles and return its path."""
        ...

    def utc_now(self) -> datetime.datetime:
        """Return the wall-clock time stamped into lines (CRI and docker json-file)."""
        ...


REAL_BACKEND: Backend = RealBackend()

_current: contextvars.ContextVar[Backend] = contextvars.ContextVar(
    "stressor_backend", default=REAL_BACKEND
)


def current_backend() -> Backend:
    """Return the backend of the current task: the one ``use_backend`` set, or the real one."""
    return _current.get()


@contextlib.contextmanager
def use_backend(backend: Backend) -> Iterator[Backend]:
    """Make ``backend`` current in this block, and in every task started inside it."""
    token = _current.set(backend)
    try:
        yield backend
    finally:
        _current.reset(token)


def make_backend(name: str) -> Backend:
    """Return a fresh backend called ``name``: ``real`` or ``fake``.

    Raises:
        ValueError: ``name`` is not one of ``BACKENDS``.
    """
    if name == "real":
        return REAL_BACKEND
    if name == "fake":
        # Imported here: pyfakefs is only loaded by runs that use it.
        from stressor.backends.fake import FakeBackend

        return FakeBackend()
    raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")


class _RedirectedOs:
    """Stands for ``os`` in a follower's module: each lookup goes to the current backend."""

    def __getattr__(self, name: str) -> Any:
        return getattr(current_backend().os, name)

    def __repr__(self) -> str:
        return "<os of the current stressor backend>"


_REDIRECTED_OS = _RedirectedOs()
_redirect_lock = threading.Lock()
# id(module globals) -> (users, the names replaced and their original values).
_redirected: dict[int, tuple[int, dict[str, object]]] = {}


def _module_globals(function: object) -> dict[str, Any] | None:
    """Return the globals of the module that defines ``function``, or None when unknown."""
    if isinstance(function, functools.partial):
        function = function.func
    if isinstance(function, staticmethod | classmethod):
        function = function.__func__
    function = getattr(function, "__func__", function)
    module_globals = getattr(function, "__globals__", None)
    if module_globals is None and callable(function) and not isinstance(function, type):
        # A callable object: the module that defines its class.
        module_globals = getattr(type(function).__call__, "__globals__", None)
    return module_globals if isinstance(module_globals, dict) else None


def _os_bindings(module_globals: dict[str, Any]) -> dict[str, object]:
    """Return the names in a module bound to ``os`` or to one of its functions, with values."""
    found: dict[str, object] = {}
    for name, value in module_globals.items():
        is_os_function = getattr(os, getattr(value, "__name__", ""), None) is value
        if value is os or (callable(value) and is_os_function):
            found[name] = value
    return found


def _redirected_function(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(current_backend().os, name)(*args, **kwargs)

    call.__name__ = name
    return call


@contextlib.contextmanager
def redirect_os(function: object) -> Iterator[None]:
    """Send the ``os`` calls of the module defining ``function`` to the current backend.

    A follower written outside stressor calls ``os.open``, ``os.read`` and so on
    itself. On the fake backend those would reach real files. So while the block
    runs, stand-ins replace the module's global name bound to ``os`` (``import
    os``) and its names bound to ``os`` functions (``from os import read``). A
    stand-in looks the function up on the backend of the calling task at each
    call, so cycles on real and fake files may share the module at once, and on
    the real backend the stand-ins call the real functions. The original names
    return when the last block that uses the module ends.

    Not covered: the ``open`` builtin, ``io``, ``pathlib``, ``shutil``, names bound
    inside functions or classes, and the follower's other modules. A follower that
    uses them runs on real files only.
    """
    if current_backend().name == "real":
        yield
        return
    module_globals = _module_globals(function)
    if module_globals is None or module_globals.get("__name__", "").startswith("stressor."):
        yield
        return
    key = id(module_globals)
    with _redirect_lock:
        users, originals = _redirected.get(key, (0, {}))
        if users == 0:
            originals = _os_bindings(module_globals)
            for name, value in originals.items():
                if value is os:
                    module_globals[name] = _REDIRECTED_OS
                else:
                    function_name = getattr(value, "__name__", name)
                    module_globals[name] = _redirected_function(function_name)
        _redirected[key] = (users + 1, originals)
    try:
        yield
    finally:
        with _redirect_lock:
            users, originals = _redirected.pop(key)
            if users > 1:
                _redirected[key] = (users - 1, originals)
            else:
                module_globals.update(originals)


__all__ = [
    "BACKENDS",
    "REAL_BACKEND",
    "Backend",
    "InotifyInstance",
    "OsModule",
    "StatResult",
    "current_backend",
    "make_backend",
    "redirect_os",
    "use_backend",
]
