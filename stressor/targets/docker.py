"""Models of Docker's json-file follow loop (``docker logs -f``) in 1.12.1, 1.13.0 and 17.12.0.

Both models keep the structure of ``followLogs`` in ``daemon/logger/jsonfilelog``
of those releases, over a model of the fsnotify v1.2.11 watcher they vendored, and
use Go's channel rules (``stressor.gochan``). Whether a model hangs or loses a line
follows from that structure alone:

- 1.12.1 removes the watch from inside the loop when the reader is closed. The
  watcher's removal waits for ``IN_IGNORED``, which its reader task reaches only
  after handing over every earlier event, and the loop no longer receives events:
  a write that lands between the writer's exit and the removal deadlocks it.
- 1.13.0 removes the watch in a separate task and keeps receiving events until
  that removal returned, so late writes no longer deadlock it. Its rotation path
  still removes the watch from inside the loop.
- Neither reads the file again after the reader was closed, so a line written just
  before the loop returns is lost. Both also reopen the file on a rotation without
  reading the old one to its end.
- 17.12.0 keeps the 1.13.0 loop over fsnotify v1.4.7, whose removal no longer waits,
  so neither late writes nor quick rotations deadlock it.

The models follow ``docker logs -f`` with the default ``--tail all`` on a file that
is empty when following starts.
"""

from __future__ import annotations

import enum
import json
import os

import trio

from stressor.backends import current_backend
from stressor.gochan import Always, Case, Channel, Signal, select
from stressor.targets.base import READ_CHUNK, FollowContext
from stressor.watchers.event import Op
from stressor.watchers.fsnotify import FsnotifyWatcher, open_fsnotify_watcher

# maxJSONDecodeRetry in jsonfilelog: retries on a partial or invalid line.
MAX_DECODE_RETRIES = 20000

# Attempts to reopen the file after a rotation, as in handleRotate.
REOPEN_ATTEMPTS = 6


class DecodeStatus(enum.Enum):
    """The result of ``json.Decoder.Decode``, in Go's terms."""

    OK = "ok"
    EOF = "io.EOF"
    UNEXPECTED_EOF = "io.ErrUnexpectedEOF"
    SYNTAX_ERROR = "*json.SyntaxError"


class JsonDecoder:
    """A Go ``json.Decoder`` over the log file, one JSON object per line.

    Like Go's decoder it keeps what it read past the last value in its own buffer,
    so replacing the decoder drops that buffer unless ``carry`` passes it on (the
    ``io.MultiReader(dec.Buffered(), f)`` retry).
    """

    def __init__(self, fd: int, carry: bytes = b"") -> None:
        self._fd = fd
        self._os = current_backend().os
        self.buffered = carry

    def decode(self) -> tuple[DecodeStatus, bytes]:
        """Decode the next line; return its status and the raw line when OK."""
        while b"\n" not in self.buffered:
            chunk = self._os.read(self._fd, READ_CHUNK)
            if not chunk:
                break
            self.buffered += chunk

        end = self.buffered.find(b"\n") + 1
        if end == 0:
            if self.buffered.strip():
                return DecodeStatus.UNEXPECTED_EOF, b""
            self.buffered = b""
            return DecodeStatus.EOF, b""

        line, self.buffered = self.buffered[:end], self.buffered[end:]
        try:
            json.loads(line)
        except ValueError:
            return DecodeStatus.SYNTAX_ERROR, b""
        return DecodeStatus.OK, line


def _retry_decoder(
    status: DecodeStatus, decoder: JsonDecoder, file: _OpenFile, retries: int
) -> JsonDecoder | None:
    """Return the decoder a retry continues with, or None when there is no retry.

    Like ``followLogs``, a syntax error gets a fresh decoder and a partial line gets
    one that keeps the buffered part, each up to ``MAX_DECODE_RETRIES`` times.
    """
    if retries > MAX_DECODE_RETRIES:
        return None
    if status is DecodeStatus.SYNTAX_ERROR:
        return JsonDecoder(file.fd)
    if status is DecodeStatus.UNEXPECTED_EOF:
        return JsonDecoder(file.fd, carry=decoder.buffered)
    return None


def _drain(ctx: FollowContext, decoder: JsonDecoder) -> None:
    """Send every line the decoder still yields, then stop at the first error or EOF."""
    while True:
        status, line = decoder.decode()
        if status is not DecodeStatus.OK:
            return
        ctx.deliver(line)


async def _send_message(
    ctx: FollowContext, decoder: JsonDecoder, line: bytes, closed: Signal
) -> bool:
    """Model ``select { case Msg <- msg: case <-closed: send, drain }``; return True to stop.

    ``Msg`` is buffered (4096 messages), so its case is always ready; when ``closed``
    is ready too, Go picks one of the two at random.
    """
    index, _ = await select([Always(), closed], ctx.rng)
    ctx.deliver(line)
    if index == 0:
        return False
    _drain(ctx, decoder)
    return True


def _reopen(path: str) -> int:
    """Reopen the log after a rotation, retrying while it does not exist yet."""
    error: OSError | None = None
    fs = current_backend().os
    for _ in range(REOPEN_ATTEMPTS):
        try:
            return fs.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as missing:
            error = missing
    assert error is not None
    raise error


class _OpenFile:
    """The follow loop's ``f``, which a rotation replaces."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._os = current_backend().os
        self.fd = self._os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def reopen(self) -> None:
        self.fd = _reopen(self.path)

    def close(self) -> None:
        if self.fd >= 0:
            self._os.close(self.fd)
            self.fd = -1


class Docker1121:
    """``followLogs`` of Docker 1.12.1: positive control for the removal deadlock."""

    name = "docker-1.12.1"
    description = "Docker 1.12.1 json-file follow loop (fsnotify v1.2.11): hangs on late writes"

    async def follow(self, ctx: FollowContext) -> None:
        """Follow ``ctx.path`` the way ``docker logs -f`` did in 1.12.1."""
        file = _OpenFile(ctx.path)
        try:
            async with open_fsnotify_watcher(ctx.hooks) as watcher:
                watcher.add(ctx.path)
                rotated = ctx.rotations.subscribe()
                ctx.ready()
                await self._loop(ctx, file, watcher, rotated)
        finally:
            file.close()

    async def _loop(
        self,
        ctx: FollowContext,
        file: _OpenFile,
        watcher: FsnotifyWatcher,
        rotated: Channel[None],
    ) -> None:
        decoder = JsonDecoder(file.fd)
        retries = 0
        cases: list[Case] = [watcher.events, watcher.errors, ctx.writer_done, rotated]
        while True:
            status, line = decoder.decode()
            retry = _retry_decoder(status, decoder, file, retries)
            if retry is not None:
                decoder = retry
                retries += 1
                await trio.lowlevel.checkpoint()
                continue
            if status is not DecodeStatus.OK and status is not DecodeStatus.EOF:
                return

            if status is DecodeStatus.OK:
                retries = 0
                if await _send_message(ctx, decoder, line, ctx.writer_done):
                    return
                continue

            index, _ = await select(cases, ctx.rng)
            chosen = cases[index]
            if chosen is watcher.events:
                decoder = JsonDecoder(file.fd)
            elif chosen is watcher.errors:
                return
            elif chosen is ctx.writer_done:
                await watcher.remove(ctx.path)
                return
            else:
                file.close()
                await watcher.remove(ctx.path)
                file.reopen()
                watcher.add(ctx.path)
                decoder = JsonDecoder(file.fd)


class Docker1130:
    """``followLogs`` of Docker 1.13.0: the removal on close moved out of the loop."""

    name = "docker-1.13.0"
    description = "Docker 1.13.0 json-file follow loop: no hang on late writes, can lose lines"
    remove_waits = True

    async def follow(self, ctx: FollowContext) -> None:
        """Follow ``ctx.path`` the way ``docker logs -f`` did in 1.13.0."""
        file = _OpenFile(ctx.path)
        try:
            async with open_fsnotify_watcher(ctx.hooks, remove_waits=self.remove_waits) as watcher:
                watcher.add(ctx.path)
                rotated = ctx.rotations.subscribe()
                ctx.ready()
                cancelled = Signal()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._remove_on_close, ctx, watcher, cancelled)
                    try:
                        await self._loop(ctx, file, watcher, cancelled, rotated)
                    finally:
                        # The deferred cancel(). In Go a removal still running would
                        # outlive the function; trio ends it here instead.
                        cancelled.close()
                        nursery.cancel_scope.cancel()
                # The deferred cleanup removes the watch once more before closing.
                await watcher.remove(ctx.path)
        finally:
            file.close()

    @staticmethod
    async def _remove_on_close(
        ctx: FollowContext, watcher: FsnotifyWatcher, cancelled: Signal
    ) -> None:
        index, _ = await select([ctx.writer_done, cancelled], ctx.rng)
        if index == 0:
            await watcher.remove(ctx.path)
            cancelled.close()

    async def _loop(
        self,
        ctx: FollowContext,
        file: _OpenFile,
        watcher: FsnotifyWatcher,
        cancelled: Signal,
        rotated: Channel[None],
    ) -> None:
        decoder = JsonDecoder(file.fd)
        retries = 0
        while True:
            status, line = decoder.decode()
            if status is DecodeStatus.OK:
                retries = 0
                if await _send_message(ctx, decoder, line, cancelled):
                    return
                continue
            retry = _retry_decoder(status, decoder, file, retries)
            if retry is not None:
                decoder = retry
                retries += 1
                await trio.lowlevel.checkpoint()
                continue
            if status is not DecodeStatus.EOF:
                return

            new_decoder = await self._wait_read(ctx, file, watcher, cancelled, rotated)
            if new_decoder is None:
                return
            decoder = new_decoder

    async def _wait_read(
        self,
        ctx: FollowContext,
        file: _OpenFile,
        watcher: FsnotifyWatcher,
        cancelled: Signal,
        rotated: Channel[None],
    ) -> JsonDecoder | None:
        """Wait for something to read; return a fresh decoder, or None when the loop ends."""
        cases: list[Case] = [watcher.events, watcher.errors, cancelled]
        while True:
            index, value = await select(cases, ctx.rng)
            if cases[index] is cancelled:
                return None
            if cases[index] is watcher.errors:
                # TODO: 1.13.0 recreates the watcher up to five times on an error;
                # the model ends the loop at the first one.
                return None

            op = getattr(value, "op", Op(0))
            if op == Op.WRITE:
                return JsonDecoder(file.fd)
            if op & (Op.RENAME | Op.REMOVE):
                index, _ = await select([rotated, cancelled], ctx.rng)
                if index == 1:
                    return None
                file.close()
                await watcher.remove(ctx.path)
                file.reopen()
                watcher.add(ctx.path)
                return JsonDecoder(file.fd)


class Docker17120(Docker1130):
    """Docker 17.12.0: the 1.13.0 loop over fsnotify v1.4.7, whose removal does not wait.

    The rotation path still removes the watch from inside the loop, but since the
    removal no longer waits for ``IN_IGNORED`` it cannot deadlock with delivery.
    """

    name = "docker-17.12.0"
    description = "Docker 17.12.0 json-file follow loop (fsnotify v1.4.7): no removal deadlock"
    remove_waits = False
