"""A long-lived external follower (``lifetime = "run"``): one program for every cycle.

Log shippers and agents run for days and follow every file that appears in a
directory. Such a program starts once, with ``{dir}`` naming the directory where
each cycle creates its file, and serves all of the run's cycles, also those
that run at the same time. Every cycle's writer has its own writer number, so
the lines the program prints are routed back to their cycle. Each cycle's end
marker carries a token of its own for the same reason.

Per cycle: the writer starts once the program is ready by its ``ready`` mode.
``open`` (the file open, or watched) suits a program that watches the directory
only, and ``watch`` waits for an inotify watch on the file. After the writer's
exit, ``before-remove`` fires while the program still follows the file, then the
end marker is appended, and the cycle ends once the program printed it, or once
the program printed nothing at all for ``quiet`` seconds. The program gets no
notice of the writer's exit, so lines it has not printed by then are lost.

Leaks: after the cycle's files are removed, the program has ``release`` seconds
to close every descriptor and drop every inotify watch on them. When one cycle
runs at a time, the program's descriptor and watch counts must also come back to
their resting counts: the counts once the previous cycle had let go. So a leak
of anything shows, not only of the cycle's files. The first cycle of a program
has no resting counts to meet, so what a program opens once, such as a
connection, is part of its resting counts from then on.

A program that exits is started again by the next cycle; the cycles it was part
of fail with its exit status.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets

import trio

from stressor.external.output import OutputParser
from stressor.external.process import close_pipes, end_group, end_process, start_guard
from stressor.external.procfs import (
    OpenFiles,
    WatchProbe,
    count_open,
    describe_process,
    descriptors_under,
    kernel_device,
    open_files,
    process_tree,
    watches_on,
)
from stressor.external.program import Program
from stressor.external.session import (
    CommandError,
    append_marker,
    is_ready,
    last_stderr_line,
    read_stderr,
    start_program,
    wait_ready,
)
from stressor.external.sources import OutputSource, make_source
from stressor.formats import payload_writer
from stressor.hooks import HookPoint
from stressor.leaks import Resources
from stressor.targets.base import FollowContext

log = logging.getLogger(__name__)

_MARKER_PREFIX = b"stressor-end-marker "
# Poll intervals of /proc while waiting for readiness or for a release, in seconds.
_POLL = 0.002
_MAX_POLL = 0.05
# Seconds to wait for the output readers once the program's group has ended.
_READERS_WAIT = 2.0
# Ended cycles kept for their release check. The oldest go first when a cycle never runs it.
_MAX_ENDED = 1024


@dataclasses.dataclass(eq=False)
class _Route:
    """The route of one cycle's lines, and the program's counts when the cycle started."""

    ctx: FollowContext
    marker: bytes
    last_output_at: float
    before: Resources | None
    generation: int
    alone: bool
    marker_seen: trio.Event = dataclasses.field(default_factory=trio.Event)


class ResidentProgram:
    """One program that outlives cycles; see the module documentation."""

    def __init__(self, name: str, program: Program, directory: str, nursery: trio.Nursery):
        self.name = name
        self.program = program
        self.directory = directory
        self._nursery = nursery
        self._lock = trio.Lock()
        self._process: trio.Process | None = None
        self._source: OutputSource | None = None
        # Kills the program's group if stressor dies without ending it (see ``start_guard``).
        self._guard: trio.Process | None = None
        self._stderr = [b""]
        self._parser = OutputParser()
        self._routes: dict[int, _Route] = {}
        self._last_output_at = trio.current_time()
        self._markers: dict[bytes, _Route] = {}
        # Cycles that ended, until their files are removed and ``check_release`` runs.
        self._ended: dict[int, _Route] = {}
        self._generation = 0
        self._readers_done = trio.Event()
        # The program's counts after the last cycle let go, when no cycle was in flight.
        self._resting: Resources | None = None
        # Lines of cycles judged already, which count in no verdict.
        self.late_lines = 0

    # The program's life.

    async def _ensure_running(self) -> trio.Process:
        async with self._lock:
            if self._process is not None and self._process.returncode is None:
                return self._process
            if self._process is not None:
                log.warning(
                    "target %s: long-lived program exited with status %s; starting it again",
                    self.name,
                    self._process.returncode,
                )
                await self._release_process()
            source = make_source(self.program.source)
            try:
                argv = self.program.command({"dir": self.directory, **source.placeholders()})
                process = await start_program(argv, self.program, source)
            except BaseException:
                source.close()
                raise
            self._process, self._source = process, source
            self._guard = await start_guard(process.pid)
            # A new program starts with no partial line and no stderr of the last one.
            self._parser = OutputParser()
            self._stderr = [b""]
            self._generation += 1
            self._resting = None
            self._readers_done = trio.Event()
            self._nursery.start_soon(self._read_streams, process, source, self._readers_done)
            log.info("target %s: long-lived program started, pid %d", self.name, process.pid)
            return process

    async def _read_streams(
        self, process: trio.Process, source: OutputSource, done: trio.Event
    ) -> None:
        """Read the program's output and stderr until both end, then set ``done``."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_stderr, process, self._stderr)
                await source.read(process, self._consume)
            self._parser.finish()
        finally:
            done.set()

    async def _release_process(self) -> None:
        """End the current program's group and free its pipes and source."""
        process, source, guard = self._process, self._source, self._guard
        self._process = self._source = self._guard = None
        if guard is not None:
            await end_process(guard)
        if process is not None:
            await end_group(process, self.program.grace)
            # With the whole group gone, every pipe and connection reaches its end.
            with trio.move_on_after(_READERS_WAIT):
                await self._readers_done.wait()
            await close_pipes(process)
        if source is not None:
            source.close()

    async def stop(self) -> None:
        """End the program's whole process group. Run it shielded, at the end of the run."""
        async with self._lock:
            await self._release_process()
        if self.late_lines:
            log.warning(
                "target %s: the long-lived program printed %d lines after their cycle"
                " was judged; they count in no verdict",
                self.name,
                self.late_lines,
            )

    def _count_late(self, line: bytes) -> None:
        """Count a line whose cycle was judged already; warn about the first one."""
        if not self.late_lines:
            log.warning(
                "target %s: the long-lived program printed a line after its cycle was"
                " judged, so it counts in no verdict (a late or duplicated line): %r",
                self.name,
                line[:200],
            )
        self.late_lines += 1

    def _exit_error(self, process: trio.Process) -> CommandError:
        message = last_stderr_line(self._stderr[0])
        return CommandError(
            f"{self.name} (long-lived) exited with status {process.returncode}{message}"
        )

    # Output, routed to cycles.

    def _consume(self, chunk: bytes, stream: int) -> None:
        now = trio.current_time()
        self._last_output_at = now
        lines, others = self._parser.split(chunk, stream)
        for line in lines:
            writer = payload_writer(line)
            route = None
            if writer is not None:
                route = self._routes.get(writer) or self._ended.get(writer)
            if route is None:
                self._count_late(line)
                continue
            route.last_output_at = now
            route.ctx.deliver(line)
        for line in others:
            start = line.find(_MARKER_PREFIX)
            if start >= 0:
                route = self._markers.get(line[start:].rstrip(b"\n") + b"\n")
                if route is not None:
                    route.marker_seen.set()

    # One cycle.

    async def follow(self, ctx: FollowContext) -> None:
        """Follow ``ctx.path`` for one cycle with the running program, starting it if needed."""
        process = await self._ensure_running()
        alone = not self._routes and not self._ended
        for other in (*self._routes.values(), *self._ended.values()):
            other.alone = False
        route = _Route(
            ctx=ctx,
            marker=_new_marker(),
            last_output_at=trio.current_time(),
            before=self._resting if alone else None,
            generation=self._generation,
            alone=alone,
        )
        self._routes[ctx.writer_id] = route
        self._markers[route.marker] = route
        cancelled = False
        try:
            await self._follow(process, route)
        except trio.Cancelled:
            cancelled = (
                True  # cancelled as hung or by a client that left, so no release check follows
            )
            raise
        finally:
            del self._routes[ctx.writer_id]
            del self._markers[route.marker]
            if not cancelled:
                self._ended[ctx.writer_id] = route
            while len(self._ended) > _MAX_ENDED:
                del self._ended[next(iter(self._ended))]

    async def _follow(self, process: trio.Process, route: _Route) -> None:
        ctx = route.ctx
        await wait_ready(self.name, self.program, process, ctx.path)
        ctx.ready()
        await ctx.writer_done.wait()
        route.last_output_at = max(route.last_output_at, trio.current_time())
        marked = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._removal_hooks, process, route, marked)
            await marked.wait()
            await self._wait_for_end(process, route)
            nursery.cancel_scope.cancel()
        if process.returncode is not None:
            raise self._exit_error(process)

    async def _removal_hooks(
        self, process: trio.Process, route: _Route, marked: trio.Event
    ) -> None:
        """Fire the removal hooks as seen from outside, and append the end marker after them.

        A program with an inotify watch on the file gets ``before-remove`` at once and
        ``after-remove`` if it drops the watch during the cycle. One without gets
        ``after-remove`` at once, so it has no window. Lines that the faults at these
        points write always come before an end marker, so they count in the verdict.
        """
        ctx = route.ctx
        probe = WatchProbe(process.pid)
        if not is_ready("watch", probe, ctx.path):
            if process.returncode is None:
                await ctx.hooks.fire(HookPoint.AFTER_REMOVE)
            append_marker(ctx.path, route.marker)
            marked.set()
            return
        await ctx.hooks.fire(HookPoint.BEFORE_REMOVE)
        append_marker(ctx.path, route.marker)
        marked.set()
        poll = _POLL
        while is_ready("watch", probe, ctx.path) and process.returncode is None:
            await trio.sleep(poll)
            poll = min(poll * 2, _MAX_POLL)
        if process.returncode is None and not route.marker_seen.is_set():
            await ctx.hooks.fire(HookPoint.AFTER_REMOVE)
            self._mark_again(route)

    def _mark_again(self, route: _Route) -> None:
        """Append a new end marker for ``route``, so the cycle waits for what came before it."""
        if route.marker_seen.is_set():
            return
        del self._markers[route.marker]
        route.marker = _new_marker()
        self._markers[route.marker] = route
        append_marker(route.ctx.path, route.marker)

    async def _wait_for_end(self, process: trio.Process, route: _Route) -> None:
        """Wait for the cycle's marker, or for ``quiet`` seconds of no output from the program."""
        try:
            while not route.marker_seen.is_set() and process.returncode is None:
                # A program busy printing other cycles' lines is not quiet: a cycle
                # it leaves behind for that long is found by the hang deadline.
                last = max(route.last_output_at, self._last_output_at)
                idle_until = last + self.program.quiet
                if trio.current_time() >= idle_until:
                    self._record_evidence(process, route.ctx)
                    return
                with trio.move_on_at(idle_until):
                    await route.marker_seen.wait()
        except trio.Cancelled:
            self._record_evidence(process, route.ctx)  # cancelled as hung
            raise

    def _record_evidence(self, process: trio.Process, ctx: FollowContext) -> None:
        for pid in process_tree(process.pid):
            ctx.evidence.append(describe_process(pid))
        ctx.evidence.append(
            f"long-lived program's last output ({self._parser.ignored} non-stressor lines"
            f" ignored): {self._parser.describe_last()}"
        )

    # After the cycle's files are gone.

    async def check_release(
        self, ctx: FollowContext, prefix: str, removed: set[tuple[int, int]]
    ) -> str:
        """Describe the descriptors and watches the program keeps on removed files; empty if none.

        Args:
            ctx: the cycle's context, as ``follow`` had it.
            prefix: the path prefix of every file of the cycle.
            removed: (st_ino, st_dev) of those files.
        """
        route = self._ended.get(ctx.writer_id)
        process = self._process
        if route is None or process is None or process.returncode is not None:
            return ""
        if route.generation != self._generation:
            return ""  # the program was started again since, so what it kept open is gone
        exact = route.alone and not self._routes
        identities = {(inode, kernel_device(device)) for inode, device in removed}
        try:
            return await self._wait_for_release(
                process, prefix, identities, route.before if exact else None
            )
        finally:
            # Lines of the cycle are routed to it until here, so that late ones
            # still count in its verdict.
            self._ended.pop(ctx.writer_id, None)
            in_flight = self._routes or self._ended
            if in_flight:
                self._resting = None
            else:
                self._resting = count_open(open_files(process_tree(process.pid)))

    async def _wait_for_release(
        self,
        process: trio.Process,
        prefix: str,
        removed: set[tuple[int, int]],
        before: Resources | None,
    ) -> str:
        """Poll until the program let go of the removed files, for ``release`` seconds."""
        poll = _POLL
        deadline = trio.current_time() + self.program.release_seconds
        while True:
            files = open_files(process_tree(process.pid))
            still_open = descriptors_under(files, prefix) + self._held_watches(files, removed)
            grown = count_open(files).grown_since(before) if before is not None else ""
            if not still_open and not grown:
                return ""
            if trio.current_time() >= deadline:
                break
            await trio.sleep(poll)
            poll = min(poll * 2, _MAX_POLL)
        parts = [f"held {self.program.release_seconds:g} s after the cycle's files were removed"]
        parts += still_open
        if grown:
            parts.append(grown)
        return "leaked: " + "; ".join(parts)

    def _held_watches(self, files: list[OpenFiles], removed: set[tuple[int, int]]) -> list[str]:
        """Describe the watches in ``files`` on removed inodes that no file has taken since."""
        watches = watches_on(files, removed)
        if not watches:
            return []
        in_use = self._files_in_use()
        return [
            f"pid {pid} inotify wd:{watch.wd} on removed inode {watch.inode}"
            for pid, watch in watches
            if (watch.inode, watch.device) not in in_use
        ]

    def _files_in_use(self) -> set[tuple[int, int]]:
        """Return (inode, kernel device) of every file in the directory now.

        A removed file's inode number may have gone to one of them, so a watch on
        it is no evidence of a leak.
        """
        found = set()
        for top, _, names in os.walk(self.directory):
            for name in names:
                try:
                    info = os.stat(os.path.join(top, name), follow_symlinks=False)
                except OSError:
                    continue
                found.add((info.st_ino, kernel_device(info.st_dev)))
        return found


def _new_marker() -> bytes:
    """Return a fresh end marker line, which no writer writes."""
    return _MARKER_PREFIX + secrets.token_hex(8).encode() + b"\n"
