"""Small followers, each with one fault distilled from a public bug report about log followers.

Every one follows the protocol of ``stressor.targets.base.Target`` and is meant to
be caught by a cycle with the verdict its docstring names.
"""

from __future__ import annotations

import glob
import os

import trio

from stressor.gochan import Case, select
from stressor.hooks import HookPoint
from stressor.targets.base import FollowContext, LineReader
from stressor.watchers import inotify
from stressor.watchers.event import Op
from stressor.watchers.kernel import open_inotify_watcher


def _deliver(ctx: FollowContext, reader: LineReader) -> None:
    for line in reader.read_lines():
        ctx.deliver(line)


class LeavesHandlesOnCancel:
    """Opens a descriptor and an inotify watch and closes neither when cancelled: leak."""

    name = "leaves-handles"
    description = "leaks its descriptor and watch when its client leaves"

    def __init__(self) -> None:
        self.leaked: list[int] = []

    async def follow(self, ctx: FollowContext) -> None:
        fd = os.open(ctx.path, os.O_RDONLY)
        instance = inotify.init()
        inotify.add_watch(instance, ctx.path, inotify.IN_MODIFY)
        self.leaked += [fd, instance]
        ctx.ready()
        reader = LineReader(fd)
        while not ctx.writer_done.is_closed():
            _deliver(ctx, reader)
            await trio.sleep(0.001)
        _deliver(ctx, reader)
        for handle in (fd, instance):
            os.close(handle)
            self.leaked.remove(handle)

    def close_leaks(self) -> None:
        for handle in self.leaked:
            os.close(handle)
        self.leaked.clear()


class ClosesIdleFile:
    """Closes a file after 10 ms without growth; on the next scan looks only at the new file.

    A line appended to the closed file just before a rename is never read: lost.
    """

    name = "closes-idle-file"
    description = "closes idle files and rescans by name"
    scan_interval = 0.02
    idle_timeout = 0.01

    async def follow(self, ctx: FollowContext) -> None:
        fd: int | None = os.open(ctx.path, os.O_RDONLY)
        reader = LineReader(fd)
        identity = os.fstat(fd).st_ino
        offset_by_inode: dict[int, int] = {}
        last_growth = trio.current_time()
        ctx.ready()
        try:
            while True:
                done = ctx.writer_done.is_closed()
                if fd is None:
                    fd = os.open(ctx.path, os.O_RDONLY)
                    identity = os.fstat(fd).st_ino
                    os.lseek(fd, offset_by_inode.get(identity, 0), os.SEEK_SET)
                    reader = LineReader(fd)
                    last_growth = trio.current_time()
                lines = reader.read_lines()
                for line in lines:
                    ctx.deliver(line)
                if lines:
                    last_growth = trio.current_time()
                elif trio.current_time() - last_growth > self.idle_timeout:
                    offset_by_inode[identity] = os.lseek(fd, 0, os.SEEK_CUR)
                    os.close(fd)
                    fd = None
                if done:
                    return
                await trio.sleep(self.scan_interval)
        finally:
            if fd is not None:
                os.close(fd)


class ReadsBeforeWatching:
    """Reads to the end, then adds its watch, and reads again only on events: lost."""

    name = "reads-before-watching"
    description = "adds its watch after the first read and never rereads"

    async def follow(self, ctx: FollowContext) -> None:
        fd = os.open(ctx.path, os.O_RDONLY)
        try:
            reader = LineReader(fd)
            _deliver(ctx, reader)
            await ctx.hooks.fire(HookPoint.AFTER_FIRST_READ)
            async with open_inotify_watcher(ctx.hooks) as watcher:
                watcher.add(ctx.path)
                ctx.ready()
                cases: list[Case] = [watcher.events, ctx.writer_done]
                while True:
                    index, _ = await select(cases, ctx.rng)
                    if cases[index] is ctx.writer_done:
                        return
                    _deliver(ctx, reader)
        finally:
            os.close(fd)


class ReopensWithoutDraining:
    """Follows by name but opens the new file before reading the old one to its end: lost."""

    name = "reopens-without-draining"
    description = "switches to the new file without draining the old one"

    async def follow(self, ctx: FollowContext) -> None:
        fd = os.open(ctx.path, os.O_RDONLY)
        try:
            async with open_inotify_watcher(ctx.hooks) as watcher:
                watcher.add(ctx.path)
                watcher.add(os.path.dirname(ctx.path), inotify.IN_CREATE | inotify.IN_MOVED_TO)
                ctx.ready()
                reader = LineReader(fd)
                cases: list[Case] = [watcher.events, ctx.writer_done]
                while True:
                    if os.stat(ctx.path).st_ino != os.fstat(fd).st_ino:
                        os.close(fd)
                        fd = os.open(ctx.path, os.O_RDONLY)
                        reader = LineReader(fd)
                        watcher.add(ctx.path)
                    _deliver(ctx, reader)
                    index, _ = await select(cases, ctx.rng)
                    if cases[index] is ctx.writer_done:
                        _deliver(ctx, reader)
                        return
        finally:
            os.close(fd)


class WatchesLinkDirectoryOnly:
    """Watches the directory of the symlink, not of its target, and never reopens: lost."""

    name = "watches-link-directory"
    description = "watches only the symlink's directory"

    async def follow(self, ctx: FollowContext) -> None:
        fd = os.open(ctx.path, os.O_RDONLY)
        try:
            async with open_inotify_watcher(ctx.hooks) as watcher:
                watcher.add(os.path.dirname(ctx.path), inotify.IN_MODIFY | inotify.IN_CREATE)
                ctx.ready()
                reader = LineReader(fd)
                cases: list[Case] = [watcher.events, ctx.writer_done]
                while True:
                    _deliver(ctx, reader)
                    index, _ = await select(cases, ctx.rng)
                    if cases[index] is ctx.writer_done:
                        _deliver(ctx, reader)
                        return
        finally:
            os.close(fd)


class IgnoresAttributeChange:
    """Reopens only on a move or delete of the file itself, so an unlink goes unseen: lost.

    While a descriptor is open, unlinking a watched file raises only IN_ATTRIB.
    """

    name = "ignores-attrib"
    description = "reopens only on move-self or delete-self events"

    async def follow(self, ctx: FollowContext) -> None:
        fd = os.open(ctx.path, os.O_RDONLY)
        try:
            async with open_inotify_watcher(ctx.hooks) as watcher:
                watcher.add(ctx.path)
                ctx.ready()
                reader = LineReader(fd)
                cases: list[Case] = [watcher.events, ctx.writer_done]
                while True:
                    _deliver(ctx, reader)
                    index, event = await select(cases, ctx.rng)
                    if cases[index] is ctx.writer_done:
                        _deliver(ctx, reader)
                        return
                    if getattr(event, "op", Op(0)) & (Op.REMOVE | Op.RENAME):
                        _deliver(ctx, reader)
                        os.close(fd)
                        fd = os.open(ctx.path, os.O_RDONLY)
                        reader = LineReader(fd)
                        watcher.add(ctx.path)
        finally:
            os.close(fd)


class FollowsEveryRotatedFile:
    """Follows every file matching ``NAME*`` by inode; a copy has a new inode: duplicate."""

    name = "follows-every-rotated-file"
    description = "reads every NAME* file it has not seen by inode"

    async def follow(self, ctx: FollowContext) -> None:
        offsets: dict[int, int] = {}
        ctx.ready()
        while True:
            done = ctx.writer_done.is_closed()
            for path in sorted(glob.glob(ctx.path + "*")):
                self._read(ctx, path, offsets)
            if done:
                return
            await trio.sleep(0.002)

    @staticmethod
    def _read(ctx: FollowContext, path: str, offsets: dict[int, int]) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            inode = os.fstat(fd).st_ino
            offset = offsets.get(inode, 0)
            if os.fstat(fd).st_size < offset:
                offset = 0
            os.lseek(fd, offset, os.SEEK_SET)
            data = b""
            while chunk := os.read(fd, 65536):
                data += chunk
            end = data.rfind(b"\n") + 1
            for line in data[:end].splitlines(keepends=True):
                ctx.deliver(line)
            offsets[inode] = offset + end
        finally:
            os.close(fd)


class KeepsOffsetAfterTruncation:
    """Reads at its own offset and never notices that the file shrank: lost."""

    name = "keeps-offset"
    description = "keeps its offset past the end of a truncated file"

    async def follow(self, ctx: FollowContext) -> None:
        fd = os.open(ctx.path, os.O_RDONLY)
        offset = 0
        pending = b""
        ctx.ready()
        try:
            while True:
                done = ctx.writer_done.is_closed()
                while chunk := os.pread(fd, 65536, offset):
                    offset += len(chunk)
                    pending += chunk
                end = pending.rfind(b"\n") + 1
                for line in pending[:end].splitlines(keepends=True):
                    ctx.deliver(line)
                pending = pending[end:]
                if done:
                    return
                await trio.sleep(0.002)
        finally:
            os.close(fd)
