"""A follower that polls the file with ``stat``: slower, but needs no inotify."""

from __future__ import annotations

import os

from stressor.backends import current_backend
from stressor.gochan import select
from stressor.targets.base import FollowContext, LineReader
from stressor.watchers.polling import open_polling_watcher


class PollingFollower:
    """Read whenever a poll sees the file change; at the end, stop polling and drain."""

    name = "polling"
    description = "stat-polling follower (10 ms interval): drains the file after it stops polling"

    async def follow(self, ctx: FollowContext) -> None:
        """Deliver every line of ``ctx.path`` until the writer is done and the file drained."""
        fs = current_backend().os
        fd = fs.open(ctx.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            async with open_polling_watcher(ctx.hooks) as watcher:
                watcher.add(ctx.path)
                ctx.ready()
                reader = LineReader(fd)
                cases = [watcher.events, ctx.writer_done]
                while True:
                    for line in reader.read_lines():
                        ctx.deliver(line)
                    index, _ = await select(cases, ctx.rng)
                    if cases[index] is ctx.writer_done:
                        break

                await watcher.remove(ctx.path)
                for line in reader.read_lines():
                    ctx.deliver(line)
        finally:
            fs.close(fd)
