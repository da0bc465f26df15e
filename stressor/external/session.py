"""One run of an external follower for one cycle (``lifetime = "cycle"``).

The program starts on the cycle's file and ends with it; see
``stressor.targets.command`` for the ``done`` modes and how the window is found
from outside. ``run_for_cycle`` ends the program's whole process group in a
shielded ``finally``, also when the cycle is cancelled, and leaves hang evidence
in ``ctx.evidence`` when the cycle cancels it.
"""

from __future__ import annotations

import logging
import os

import trio

from stressor.external.output import OutputParser
from stressor.external.process import (
    DEVNULL,
    PIPE,
    close_pipes,
    end_group,
    end_process,
    read_pipe,
    require_tool,
    start_in_group,
)
from stressor.external.procfs import (
    WatchProbe,
    describe_process,
    follows_file,
    group_members,
    kernel_device,
    process_tree,
)
from stressor.external.program import Program
from stressor.external.sources import CHUNK, OutputSource, make_source
from stressor.formats import parse_line
from stressor.hooks import HookPoint
from stressor.targets.base import FollowContext, LineReader

# Poll interval of /proc while waiting for a watch to appear or vanish, in seconds.
_POLL = 0.002
_MAX_POLL = 0.02
# Bytes of stderr kept, the end of it, to explain a failed program.
STDERR_TAIL = 2048
# Targets already warned that their program was not ready in time.
_WARNED_UNREADY: set[str] = set()

log = logging.getLogger(__name__)


class CommandError(RuntimeError):
    """The external follower failed: it could not start, or exited with an error."""


async def run_for_cycle(name: str, program: Program, ctx: FollowContext) -> None:
    """Run ``program`` on ``ctx.path`` for one cycle; always end its process group."""
    sentinel = None
    process = None
    session = None
    source = make_source(program.source)
    try:
        values = {"path": ctx.path, "dir": os.path.dirname(ctx.path), **source.placeholders()}
        if program.done == "pid" or "writer_pid" in program.placeholders:
            sleep = require_tool("sleep", "the {writer_pid} sentinel", "coreutils")
            sentinel = await start_in_group(
                [sleep, "infinity"], stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
            )
            values["writer_pid"] = str(sentinel.pid)
        argv = program.command(values)
        process = await start_program(argv, program, source)
        session = _Session(name, program, ctx, process, sentinel, source)
        try:
            await session.run()
        except ExceptionGroup as group:
            # The session's nursery wraps errors; the crash detail names the error.
            raise single_error(group) from None
    finally:
        with trio.CancelScope(shield=True):
            if process is not None:
                if session is None or not session.ended:
                    await end_group(process, program.grace)
                await close_pipes(process)
            if sentinel is not None:
                await end_process(sentinel)
            source.close()


async def start_program(argv: list[str], program: Program, source: OutputSource) -> trio.Process:
    """Start ``argv`` in a process group of its own, its output going to ``source``."""
    try:
        return await start_in_group(
            argv,
            stdin=PIPE if program.done == "stdin" else DEVNULL,
            stdout=source.stdout,
            stderr=PIPE,
        )
    except OSError as error:
        raise CommandError(
            f"cannot start {argv[0]!r}: {error.strerror}; check the argv of the target"
        ) from None


async def read_stderr(process: trio.Process, keep: list[bytes]) -> None:
    """Keep the last ``STDERR_TAIL`` bytes of the program's stderr in ``keep[0]``."""
    stream = process.stderr
    assert stream is not None
    while chunk := await read_pipe(stream, CHUNK):
        keep[0] = (keep[0] + chunk)[-STDERR_TAIL:]


def last_stderr_line(stderr_tail: bytes) -> str:
    """Return ``": LINE"`` with the last line of stderr, or an empty string."""
    last = stderr_tail.decode(errors="replace").strip().splitlines()[-1:]
    return f": {last[0]}" if last else ""


class _Session:
    """One run of the program: its output, its readiness, its notice, its end."""

    def __init__(
        self,
        name: str,
        program: Program,
        ctx: FollowContext,
        process: trio.Process,
        sentinel: trio.Process | None,
        source: OutputSource,
    ) -> None:
        self.name = name
        self.program = program
        self.source = source
        self.ctx = ctx
        self.process = process
        self.sentinel = sentinel
        self.parser = OutputParser()
        self.stderr = [b""]
        self.last_output_at = trio.current_time()
        self.output_done = trio.Event()
        self.ending = False
        self.ended = False
        self.marker_seen = trio.Event()
        self.file = _FileReader(ctx.path) if program.output == "events" else None
        self.watch_probe = WatchProbe(process.pid)

    def _file_id(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.ctx.path)
        except OSError:
            return None
        return info.st_ino, kernel_device(info.st_dev)

    def _watching(self) -> bool:
        file_id = self._file_id()
        if file_id is None:
            return False
        return self.watch_probe.watching(*file_id)

    def _consume(self, chunk: bytes, stream: int) -> None:
        """Parse one chunk of the program's output and deliver the lines it completes."""
        self.last_output_at = trio.current_time()
        seen = self.parser.lines_seen
        lines = self.parser.feed(chunk, stream)
        if self.file is not None and self.parser.lines_seen > seen:
            lines = self.file.read()
            if any(self.parser.marker in line for line in lines):
                self.parser.marker_seen = True
            lines = [line for line in lines if parse_line(line) is not None]
        for line in lines:
            self.ctx.deliver(line)
        if self.parser.marker_seen:
            self.marker_seen.set()

    async def _read_output(self) -> None:
        await self.source.read(self.process, self._consume)
        self.parser.finish()
        self.output_done.set()

    async def _wait_ready(self) -> None:
        await wait_ready(self.name, self.program, self.process, self.ctx.path)
        self.ctx.ready()

    async def _tell(self) -> None:
        done = self.program.done
        if self.sentinel is not None:
            # The writer exits, so its PID goes away in every ``done`` mode.
            await end_process(self.sentinel)
        if done == "stdin" and self.process.stdin is not None:
            await self.process.stdin.aclose()
        elif done == "signal" and self.process.returncode is None:
            self.process.send_signal(self.program.signum)

    def _running(self) -> bool:
        # A zombie, or a process between closing its files and becoming a zombie,
        # is no longer running.
        return not self.ending and alive(self.process.pid)

    async def _removal_hooks(self, before_fired: trio.Event) -> None:
        """Fire the removal hooks as seen from outside; see the module documentation.

        It runs in a task of its own, so a fault's delay never delays the session.
        ``after-remove`` fires only while the program still runs after its watch
        went away: a line written once the program exited, or while stressor ends
        it, is one that no follower could have read.
        """
        hooks = self.ctx.hooks
        if self._watching():
            await hooks.fire(HookPoint.BEFORE_REMOVE)
        before_fired.set()
        # Polls start fine, when a removal right after the tell is most likely, and
        # back off so that a long wait costs little.
        poll = _POLL
        while self._watching() and self._running():
            await trio.sleep(poll)
            poll = min(poll * 2, _MAX_POLL)
        # An exiting process drops its watches a moment before it becomes a zombie,
        # so one more poll interval separates that from a removal while it runs.
        await trio.sleep(_POLL)
        if self._running():
            await hooks.fire(HookPoint.AFTER_REMOVE)

    async def _end_when_quiet(self) -> None:
        quiet = self.program.quiet
        while not (self.parser.marker_seen or self.output_done.is_set()):
            idle_until = self.last_output_at + quiet
            if trio.current_time() >= idle_until:
                break
            with trio.move_on_at(idle_until):
                await self.marker_seen.wait()
        self.ending = True
        with trio.CancelScope(shield=True):
            await end_group(self.process, self.program.grace)
        self.ended = True

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self.file is not None:
                self.file.close()

    async def _run(self) -> None:
        completed = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_output)
                nursery.start_soon(read_stderr, self.process, self.stderr)
                await self._wait_ready()
                await self.ctx.writer_done.wait()
                self.last_output_at = max(self.last_output_at, trio.current_time())
                await self._tell()
                before_fired = trio.Event()
                nursery.start_soon(self._removal_hooks, before_fired)
                if self.program.done == "never":
                    # The marker goes after the faults' late writes, so it covers them.
                    await before_fired.wait()
                    append_marker(self.ctx.path, self.parser.marker)
                    await self._end_when_quiet()
                # Both have usually happened by now. Each wait would still give the
                # scheduler a turn, which delays the end of every cycle under load.
                if self.process.returncode is None:
                    await self.process.wait()
                if not self.output_done.is_set():
                    await self.output_done.wait()
                # A fault still waiting to land once the program has ended is dropped:
                # nothing is left to observe it.
                nursery.cancel_scope.cancel()
            completed = True
        finally:
            # Cancelled as hung (or failed): keep what /proc shows before the end.
            if not completed:
                self._record_evidence()
        self._check_exit()

    def _record_evidence(self) -> None:
        members = group_members(self.process.pid)
        if not members:
            return
        file_id = self._file_id()
        for pid in members:
            self.ctx.evidence.append(describe_process(pid, file_id))
        self.ctx.evidence.append(
            f"last output ({self.parser.ignored} non-stressor lines ignored):"
            f" {self.parser.describe_last()}"
        )

    def _check_exit(self) -> None:
        code = self.process.returncode
        if self.ended or code == 0:
            return  # ended by stressor (done = "never"), or a clean exit
        if self.program.done == "signal" and code == -self.program.signum:
            return
        message = last_stderr_line(self.stderr[0])
        raise CommandError(f"{self.name} exited with status {code}{message}")


class _FileReader:
    """Stressor's own reading of the file, for a program that only reports events.

    On each event it reads the file to its end. Once the path names another file
    (a rotation), it reads the old one to its end and goes on with the new one.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.reader = LineReader(self.fd)

    def read(self) -> list[bytes]:
        lines = self.reader.read_lines()
        try:
            replaced = os.stat(self.path).st_ino != os.fstat(self.fd).st_ino
            if replaced:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return lines
        if replaced:
            os.close(self.fd)
            self.fd = fd
            self.reader = LineReader(fd)
            lines += self.reader.read_lines()
        return lines

    def close(self) -> None:
        os.close(self.fd)


def is_ready(mode: str, probe: WatchProbe, path: str) -> bool:
    """Tell whether ``probe``'s process tree is ready for the writer on ``path`` by ``mode``.

    ``watch``: an inotify watch on the file. ``open``: the file open, or watched.
    """
    try:
        real = os.path.realpath(path)
        info = os.stat(real)
    except OSError:
        return False
    device = kernel_device(info.st_dev)
    if mode == "open":
        return follows_file(process_tree(probe.root), real, info.st_ino, device)
    return probe.watching(info.st_ino, device)


async def wait_ready(name: str, program: Program, process: trio.Process, path: str) -> None:
    """Wait until ``process`` is ready for the writer on ``path``, or ``ready_timeout`` passed.

    A program that exits is ready at once: its cycle fails without waiting.
    """
    if program.ready == "start":
        return
    # Most programs are ready within a few milliseconds of their start, so the first
    # polls are short.
    poll = _POLL / 8
    probe = WatchProbe(process.pid)
    with trio.move_on_after(program.ready_timeout) as waiting:
        while process.poll() is None and not is_ready(program.ready, probe, path):
            await trio.sleep(poll)
            poll = min(poll * 2, _POLL)
    if waiting.cancelled_caught and name not in _WARNED_UNREADY:
        _WARNED_UNREADY.add(name)
        fix = "raise ready_timeout if the program is slow to start"
        if program.ready == "watch":
            fix += ", or set ready = 'open' if it reads the file without an inotify watch on it"
        log.warning(
            "target %s: the program was not ready (ready = %r) within ready_timeout %g s,"
            " so the writer started anyway and lines written before it was ready may count"
            " as lost; %s",
            name,
            program.ready,
            program.ready_timeout,
            fix,
        )


def append_marker(path: str, marker: bytes) -> None:
    """Append the end ``marker`` to ``path``, unless a partial line is pending that it would join.

    With no file to append to (it was rotated away and not replaced), nothing is
    written: the quiet timer then ends the wait.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
    except OSError:
        return
    try:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            os.write(fd, marker)
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """Tell whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            stat = file.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :][:1] not in ("Z", "X", "")


def single_error(error: Exception) -> Exception:
    """Return the only error inside nested one-error groups, or ``error`` itself."""
    while isinstance(error, ExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
