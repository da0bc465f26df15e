"""The sources of an external follower's output: its stdout, a file it writes, or TCP.

Each source hands chunks of output to a ``consume(chunk, stream)`` callback and
returns once the output is complete. ``stream`` numbers the connections of
the TCP source, so a partial line on one connection never joins another's.

- ``stdout``: complete at the end of the pipe.
- ``file``: a file the program writes, created empty in a private directory and
  read every 2 ms. It is complete once read to its end after the program exited.
- ``tcp``: a listener on 127.0.0.1 at a port of the kernel's choice; the program
  connects as often as it likes. Complete once the program exited, the
  connections it left waiting were taken, and every connection reached its end.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from typing import Protocol

import trio

from stressor.external.process import read_pipe

Consume = Callable[[bytes, int], None]
# Bytes read from the program's output at a time.
CHUNK = 64 * 1024
# Poll interval of the output file, in seconds.
_FILE_POLL = 0.002
# Connections the TCP listener queues before it takes them.
_BACKLOG = 128
# Seconds between tries to take a connection while out of descriptors.
_FULL_WAIT = 0.05

log = logging.getLogger(__name__)


class OutputSource(Protocol):
    """One place to read a program's output from; see the module documentation."""

    stdout: int

    def placeholders(self) -> dict[str, str]:
        """Return what the source fills into the argument list, such as ``{"port": "4242"}``."""
        ...

    async def read(self, process: trio.Process, consume: Consume) -> None:
        """Hand every chunk of output to ``consume``; return once the output is complete."""
        ...

    def close(self) -> None:
        """Close the source's listener or remove its directory. Calling it twice is safe."""
        ...


class StdoutSource:
    """The program's stdout, through a pipe."""

    stdout = subprocess.PIPE

    def placeholders(self) -> dict[str, str]:
        return {}

    async def read(self, process: trio.Process, consume: Consume) -> None:
        stream = process.stdout
        assert stream is not None
        while chunk := await read_pipe(stream, CHUNK):
            consume(chunk, 0)

    def close(self) -> None:
        pass


class FileSource:
    """A file the program writes, whose path fills ``{output}``."""

    stdout = subprocess.DEVNULL

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="stressor-output-")
        self.path = os.path.join(self.directory, "output")
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))

    def placeholders(self) -> dict[str, str]:
        return {"output": self.path}

    async def read(self, process: trio.Process, consume: Consume) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            while True:
                # Checked before the read, so the last read comes after the exit.
                exited = process.poll() is not None
                while chunk := os.read(fd, CHUNK):
                    consume(chunk, 0)
                if exited:
                    return
                await trio.sleep(_FILE_POLL)
        finally:
            os.close(fd)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class TcpSource:
    """A TCP listener on 127.0.0.1 whose port fills ``{port}``."""

    stdout = subprocess.DEVNULL

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.listener.bind(("127.0.0.1", 0))
            self.listener.listen(_BACKLOG)
        except OSError:
            self.listener.close()
            raise
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        # Set once taking a connection failed for want of descriptors.
        self.exhausted = False

    def placeholders(self) -> dict[str, str]:
        return {"port": str(self.port)}

    async def read(self, process: trio.Process, consume: Consume) -> None:
        accepting = trio.CancelScope()
        async with trio.open_nursery() as readers:
            readers.start_soon(self._accept_forever, readers, consume, accepting)
            await process.wait()
            # Connections the program opened before it exited may still wait in
            # the queue; they carry output too.
            self._accept_waiting(readers, consume)
            accepting.cancel()

    async def _accept_forever(
        self, readers: trio.Nursery, consume: Consume, accepting: trio.CancelScope
    ) -> None:
        with accepting:
            while True:
                await trio.lowlevel.wait_readable(self.listener)
                if not self._accept_waiting(readers, consume):
                    # Out of descriptors: the connection stays queued until some close.
                    await trio.sleep(_FULL_WAIT)

    def _accept_waiting(self, readers: trio.Nursery, consume: Consume) -> bool:
        """Take every queued connection; return False if the process ran out of descriptors."""
        while True:
            try:
                connection, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return True
            except OSError as error:
                if error.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                if not self.exhausted:
                    log.error(
                        "TCP output source on 127.0.0.1:%d: cannot take a connection (%s);"
                        " raise the descriptor limit (ulimit -n) or lower --concurrency",
                        self.port,
                        error.strerror,
                    )
                self.exhausted = True
                return False
            self.connections += 1
            readers.start_soon(_read_connection, connection, self.connections, consume)

    def close(self) -> None:
        self.listener.close()


async def _read_connection(connection: socket.socket, stream: int, consume: Consume) -> None:
    with contextlib.closing(trio.socket.from_stdlib_socket(connection)) as wrapped:
        while True:
            try:
                chunk = await wrapped.recv(CHUNK)
            except ConnectionResetError:
                return  # what arrived before the reset was handed on already
            if not chunk:
                return
            consume(chunk, stream)


def make_source(name: str) -> OutputSource:
    """Return a fresh source called ``name``: ``stdout``, ``file`` or ``tcp``."""
    if name == "file":
        return FileSource()
    if name == "tcp":
        return TcpSource()
    return StdoutSource()
