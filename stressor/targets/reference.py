"""A correct inotify follower: the negative control that never hangs and never loses."""

from __future__ import annotations

import os

from stressor.gochan import Case, select
from stressor.targets.base import FollowContext, LineReader
from stressor.watchers.kernel import open_inotify_watcher


class ReferenceFollower:
    """Follow with kernel inotify, then remove the watch and drain the file once more.

    The order at the end is what makes it correct: the watch removal does not
    depend on the event reader, and the last read comes after the removal, so any
    line written before the follower returns has been read.
    """

    name = "reference"
    description = "correct inotify follower: drains the file after removing its watch"

    async def follow(self, ctx: FollowContext) -> None:
        """Deliver every line of ``ctx.path`` until the writer is done and the file drained."""
        fd = os.open(ctx.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            async with open_inotify_watcher(ctx.hooks) as watcher:
                watcher.add(ctx.path)
                ctx.ready()
                reader = LineReader(fd)
                cases: list[Case] = [watcher.events, watcher.errors, ctx.writer_done]
                while True:
                    self._deliver(ctx, reader)
                    index, _ = await select(cases, ctx.rng)
                    if cases[index] is ctx.writer_done:
                        break

                await watcher.remove(ctx.path)
                self._deliver(ctx, reader)
        finally:
            os.close(fd)

    @staticmethod
    def _deliver(ctx: FollowContext, reader: LineReader) -> None:
        for line in reader.read_lines():
            ctx.deliver(line)
