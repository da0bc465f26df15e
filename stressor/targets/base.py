"""The context a follower under test receives from a cycle, and the protocol it implements."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import trio

from stressor.backends import current_backend
from stressor.gochan import Channel, Signal
from stressor.hooks import Hooks

# Read size for followers that read the file in chunks.
READ_CHUNK = 64 * 1024


class RotationNotices:
    """Rotation notices from the writer, published the way Docker's logger does.

    Docker's logger blocks on each notice until its subscribed follower takes it,
    with room for one waiting notice. Only followers that subscribe are waited for.
    """

    def __init__(self) -> None:
        self._channel: Channel[None] = Channel(1)
        self._subscribed = False

    def subscribe(self) -> Channel[None]:
        """Return the channel of notices; the writer waits for this follower from now on."""
        self._subscribed = True
        return self._channel

    async def publish(self, limit: float) -> None:
        """Send one notice, waiting at most ``limit`` seconds for the follower to make room.

        A hung follower never takes it, and waiting for it would stall the writer
        forever, so after ``limit`` the notice is dropped.
        """
        if not self._subscribed:
            return
        with trio.move_on_after(limit):
            await self._channel.send(None)


@dataclasses.dataclass
class FollowContext:
    """Everything one follower needs for one cycle.

    Attributes:
        path: the log file to follow. It exists and is empty when the follower starts.
        writer_done: closed once the writer has exited and its output is complete,
            the way Docker closes every log reader when a container stops.
        rotations: rotation notices, like Docker's ``notifyRotate``; a follower that
            wants them subscribes.
        hooks: hook points the follower's watcher fires; faults act there.
        rng: the follower's only random source (Go ``select`` choices), seeded
            from the run seed and the cycle index.
        deliver: hands over one complete line, newline included, as the follower read it.
        ready: call once the follower is watching the file; the writer starts then.
        evidence: notes a follower leaves when it is cancelled as hung, such as an
            external program's /proc state; the hang's finding includes them.
        writer_id: the writer's number in each line's payload (``w=``). It is 1,
            except for followers that share one program between cycles, where it
            tells the cycles' lines apart.
    """

    path: str
    writer_done: Signal
    rotations: RotationNotices
    hooks: Hooks
    rng: random.Random
    deliver: Callable[[bytes], None]
    ready: Callable[[], None]
    evidence: list[str] = dataclasses.field(default_factory=list)
    writer_id: int = 1


class Target(Protocol):
    """A follower under test: a name, a one-line description and a follow coroutine."""

    name: str
    description: str

    async def follow(self, ctx: FollowContext) -> None:
        """Follow ``ctx.path`` until ``ctx.writer_done`` closes, delivering every line."""
        ...


class SharedTarget(Target, Protocol):
    """A follower whose one program serves many cycles, such as a long-lived agent.

    Its cycles create their files in ``shared_directory``, each with a writer
    number of its own. Once a cycle's files are removed, ``check_release``
    describes the descriptors and watches the program keeps on them (a leak), or
    returns an empty string.
    """

    shared_directory: str

    async def check_release(
        self, ctx: FollowContext, prefix: str, removed: set[tuple[int, int]]
    ) -> str: ...


@contextlib.asynccontextmanager
async def open_target(target: Target, directory: str) -> AsyncIterator[Target]:
    """Yield the follower to run cycles with in ``directory``, for as long as the block runs.

    Most targets are their own follower. A target with an ``open_session`` method
    (a long-lived program) starts there what its cycles share. The follower it
    yields has no such method, so opening that follower again yields it unchanged.
    """
    opener = getattr(target, "open_session", None)
    if opener is None:
        yield target
        return
    async with opener(directory) as bound:
        yield bound


def shared_directory(target: Target) -> str | None:
    """Return the directory where a ``SharedTarget``'s cycles create their files, or None."""
    directory = getattr(target, "shared_directory", None)
    return directory if isinstance(directory, str) else None


class LineReader:
    """Read a file descriptor from its current offset and split the bytes into lines.

    A trailing fragment without a newline is kept until the rest arrives, so a
    follower never delivers half a line that the writer is still writing. A file
    that was truncated, or rewritten from the start, is read again from offset 0.
    Before each read the reader checks that the file is no shorter than what it
    read and that the last bytes it read are still in place. ``fd`` is a descriptor
    of the backend current when the reader is built.
    """

    # Bytes compared to tell that the file was rewritten; more than any one line.
    _CHECK_BYTES = 512

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._os = current_backend().os
        self._pending = b""
        self._offset = 0
        self._tail = b""

    def _rewound(self) -> bool:
        if self._offset == 0:
            return False
        if self._os.fstat(self.fd).st_size < self._offset:
            return True
        start = self._offset - len(self._tail)
        return self._os.pread(self.fd, len(self._tail), start) != self._tail

    def read_lines(self) -> list[bytes]:
        """Read to end of file and return the complete lines read, newline included."""
        if self._rewound():
            self._os.lseek(self.fd, 0, os.SEEK_SET)
            self._offset = 0
            self._pending = b""
            self._tail = b""
        chunks = [self._pending]
        while True:
            chunk = self._os.read(self.fd, READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            self._offset += len(chunk)
        fresh = b"".join(chunks[1:])
        if fresh:
            self._tail = (self._tail + fresh)[-self._CHECK_BYTES :]
        data = self._pending + fresh
        end = data.rfind(b"\n") + 1
        self._pending = data[end:]
        return data[:end].splitlines(keepends=True)
