"""What a follower under test receives from a cycle, and what it must provide."""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Callable
from typing import Protocol

from stressor.gochan import Channel, Signal
from stressor.hooks import Hooks

# Read size for followers that read the file in chunks.
READ_CHUNK = 64 * 1024


@dataclasses.dataclass
class FollowContext:
    """Everything one follower needs for one cycle.

    Attributes:
        path: the log file to follow. It exists and is empty when the follower starts.
        writer_done: closed once the writer has exited and its output is complete,
            the way Docker closes every log reader when a container stops.
        rotated: receives one value per rotation, like Docker's ``notifyRotate``.
        hooks: hook points the follower's watcher fires; faults act there.
        rng: the follower's only random source (Go ``select`` choices), seeded
            from the run seed and the cycle index.
        deliver: hands over one complete line, newline included, as the follower read it.
        ready: call once the follower is watching the file; the writer starts then.
    """

    path: str
    writer_done: Signal
    rotated: Channel[None]
    hooks: Hooks
    rng: random.Random
    deliver: Callable[[bytes], None]
    ready: Callable[[], None]


class Target(Protocol):
    """A follower under test: a name, a one-line description and a follow coroutine."""

    name: str
    description: str

    async def follow(self, ctx: FollowContext) -> None:
        """Follow ``ctx.path`` until ``ctx.writer_done`` closes, delivering every line."""
        ...


class LineReader:
    """Read a file descriptor from its current offset and split the bytes into lines.

    A trailing fragment without a newline is kept until the rest arrives, so a
    follower never delivers half a line that the writer is still writing.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending = b""

    def read_lines(self) -> list[bytes]:
        """Read to end of file and return the complete lines read, newline included."""
        chunks = [self._pending]
        while True:
            chunk = os.read(self.fd, READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        end = data.rfind(b"\n") + 1
        self._pending = data[end:]
        return data[:end].splitlines(keepends=True)
