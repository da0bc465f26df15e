"""A small log follower written against stressor's Python follower protocol.

``follow`` is correct. ``follow_without_drain`` has a classic bug: it stops as
soon as the writer is done and never reads the file again, so a line written
just before it removes its watch is lost.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import trio

from stressor import Watcher, WriterDone

Deliver = Callable[[bytes], None]


class LineBuffer:
    """Read a file from where the last read stopped and return its complete lines."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""

    def read_lines(self) -> list[bytes]:
        """Read to the end of the file; keep a trailing partial line for the next read."""
        data = self.pending
        while chunk := os.read(self.fd, 65536):
            data += chunk
        end = data.rfind(b"\n") + 1
        self.pending = data[end:]
        return data[:end].splitlines(keepends=True)


async def _follow(
    path: str, watcher: Watcher, writer_done: WriterDone, deliver: Deliver, *, drain: bool
) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        lines = LineBuffer(fd)
        watcher.add(path)
        async with trio.open_nursery() as nursery:

            async def stop_when_writer_done() -> None:
                await writer_done.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_when_writer_done)
            while True:
                for line in lines.read_lines():
                    deliver(line)
                await watcher.events.receive()
        await watcher.remove(path)
        if drain:
            # Lines written after the last event was handled, up to the removal.
            for line in lines.read_lines():
                deliver(line)
    finally:
        os.close(fd)


async def follow(path: str, watcher: Watcher, writer_done: WriterDone, deliver: Deliver) -> None:
    """Deliver every line of ``path`` until the writer is done, then drain the file."""
    await _follow(path, watcher, writer_done, deliver, drain=True)


async def follow_without_drain(
    path: str, watcher: Watcher, writer_done: WriterDone, deliver: Deliver
) -> None:
    """Deliver lines until the writer is done, but skip the final read (the bug)."""
    await _follow(path, watcher, writer_done, deliver, drain=False)
