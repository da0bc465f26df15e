"""External programs as targets: ``CommandTarget`` and the built-in recipes.

A command target starts a program per cycle, with ``{path}``, ``{dir}`` and
``{writer_pid}`` in its argument list replaced by the followed file, its
directory and the PID of a sentinel process that plays the writer. The program
runs in a process group of its own. Each stressor line it prints on stdout is
delivered; other output is counted and ignored.

How the program learns that the writer is done (``done``):

- ``pid``: the sentinel is killed and reaped when the writer exits, as
  ``tail --pid`` expects; the program must then exit by itself.
- ``stdin``: its stdin is closed; it must then exit.
- ``signal``: it receives ``signal`` (``SIGTERM`` by default); it must then exit.
- ``never``: the program gets no notice. Stressor appends an end marker line (never
  delivered) to the file after the writer's exit, and ends the program once it
  printed the marker, or once its output has been quiet for ``quiet`` seconds.
  Lines it has not printed by then are lost.
  The marker is left out while a partial line is pending, so it never joins one.

Window hits from outside: right after telling the program, the target fires
``before-remove`` (faults there land while the program is being told), then
watches ``/proc/PID/fdinfo`` of the program's process group and fires
``after-remove`` once no inotify watch on the followed file's inode is left (or
the program exited). So a fault counts as a window hit only when it landed after
the writer's exit while the program still watched the file; a program that never
watches the file with inotify has no window.

A program that is still running when the cycle cancels it (a hang) leaves its
``/proc`` status, wchan, kernel stack, descriptors, inotify watches and last
output in ``ctx.evidence`` before its group is ended.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import signal
import tempfile
from collections.abc import Sequence
from typing import Any

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
    strace_prefix,
)
from stressor.external.procfs import (
    WatchProbe,
    describe_process,
    group_members,
    kernel_device,
)
from stressor.formats import parse_line
from stressor.hooks import HookPoint
from stressor.targets.base import FollowContext, LineReader

DONE_MODES = ("pid", "stdin", "signal", "never")
READY_MODES = ("watch", "start")
OUTPUTS = ("lines", "events")
SOURCES = ("stdout", "file")
# Target names become file names and metric label values, so they stay short and plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PLACEHOLDER = re.compile(r"\{(path|dir|writer_pid|output)\}")
# Poll interval of /proc while waiting for a watch to appear or vanish, in seconds.
_POLL = 0.002
_MAX_POLL = 0.02
# Bytes read from the program's output at a time.
_CHUNK = 64 * 1024
# Bytes of stderr kept, the end of it, to explain a failed program.
_STDERR_TAIL = 2048


class CommandError(RuntimeError):
    """The external follower failed: it could not start, or exited with an error."""


class CommandTarget:
    """An external program as a follower: ``CommandTarget("tail-F", ["tail", "-F", "{path}"])``.

    Args:
        name: the target's name in reports and metrics (as for ``PythonTarget``).
        argv: the argument list, with ``{path}``, ``{dir}`` and ``{writer_pid}``
            placeholders. With ``shell=True``, one string for ``/bin/sh -c``; the
            placeholders are then shell-quoted. ``{writer_pid}`` is the PID of a
            ``sleep`` sentinel that is killed and reaped when the writer exits.
        done: how the program learns the writer is done, one of ``DONE_MODES``.
        output: ``lines`` when the program prints the lines it read. ``events``
            when it prints one line per file event (as ``inotifywait -m``).
            Stressor then reads the file itself on each event, so lines go
            missing exactly when the program misses the events that follow them.
        source: where the program's output is read: ``stdout``, or ``file``, a
            file that the program writes, whose path fills ``{output}``. Stressor
            creates it empty in a private directory and reads it every 2 ms.
        signal: the signal of ``done="signal"``, by name.
        ready: ``watch`` starts the writer once the program has an inotify watch
            on the file (or after ``ready_timeout`` seconds without one);
            ``start`` starts it at once.
        ready_timeout: seconds to wait for that watch.
        quiet: with ``done="never"``, seconds of silence after which the program
            is ended.
        grace: seconds between SIGTERM and SIGKILL when the program is ended.
        strace_delays: syscall name -> seconds: run the program under strace,
            holding each such syscall open on entry for that long (widening).
        shell: run ``argv`` through ``/bin/sh -c``; only when explicitly wanted.
        description: one line for listings.

    Raises:
        ValueError: an invalid setting; the message names it.
        MissingToolError: ``strace_delays`` is set and strace is not installed.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str] | str,
        *,
        done: str = "never",
        output: str = "lines",
        source: str = "stdout",
        signal: str = "SIGTERM",
        ready: str = "watch",
        ready_timeout: float = 2.0,
        quiet: float = 0.2,
        grace: float = 0.2,
        strace_delays: dict[str, float] | None = None,
        shell: bool = False,
        description: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"invalid target name {name!r}: use letters, digits, '.', '_' and '-',"
                " at most 64 characters, starting with a letter or digit"
            )
        if shell != isinstance(argv, str):
            raise ValueError(
                f"argv {argv!r}: give one string with shell=True, a list of strings otherwise"
            )
        if not shell and (not argv or not all(isinstance(arg, str) for arg in argv)):
            raise ValueError(f"argv {argv!r}: give a non-empty list of strings")
        if done not in DONE_MODES:
            raise ValueError(f"done {done!r}: choose one of {', '.join(DONE_MODES)}")
        if source not in SOURCES:
            raise ValueError(f"source {source!r}: choose one of {', '.join(SOURCES)}")
        if output not in OUTPUTS:
            raise ValueError(f"output {output!r}: choose one of {', '.join(OUTPUTS)}")
        if ready not in READY_MODES:
            raise ValueError(f"ready {ready!r}: choose one of {', '.join(READY_MODES)}")
        try:
            self._signal = _parse_signal(signal)
        except ValueError as error:
            raise ValueError(f"signal {signal!r}: {error}") from None
        for option, seconds in (("ready_timeout", ready_timeout), ("quiet", quiet)):
            if not 0 < seconds <= 60:
                raise ValueError(f"{option} {seconds!r}: give seconds, more than 0, at most 60")
        if not 0 <= grace <= 60:
            raise ValueError(f"grace {grace!r}: give seconds from 0 to 60")
        self.name = name
        self.argv = argv
        self.done = done
        self.output = output
        self.source = source
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.quiet = quiet
        self.grace = grace
        self.shell = shell
        self.strace_delays = dict(strace_delays or {})
        if self.strace_delays:
            strace_prefix(self.strace_delays)  # fails now, not in the first cycle
        shown = argv if isinstance(argv, str) else shlex.join(argv)
        self.description = description or f"external program: {shown}"
        words = [argv] if isinstance(argv, str) else argv
        self._uses_writer_pid = any("{writer_pid}" in word for word in words)

    def __repr__(self) -> str:
        return f"CommandTarget({self.name!r}, {self.argv!r}, done={self.done!r})"

    def command(self, path: str, writer_pid: int | None, output: str = "") -> list[str]:
        """Return the argument list for one cycle, placeholders filled in."""
        values = {
            "path": path,
            "dir": os.path.dirname(path),
            "writer_pid": "" if writer_pid is None else str(writer_pid),
            "output": output,
        }
        if isinstance(self.argv, str):
            text = _PLACEHOLDER.sub(lambda match: shlex.quote(values[match[1]]), self.argv)
            argv = ["/bin/sh", "-c", text]
        else:
            argv = [_PLACEHOLDER.sub(lambda match: values[match[1]], arg) for arg in self.argv]
        if self.strace_delays:
            argv = strace_prefix(self.strace_delays) + argv
        return argv

    async def follow(self, ctx: FollowContext) -> None:
        """Run the program on ``ctx.path`` for one cycle; always end its process group."""
        sentinel = None
        process = None
        session = None
        output_directory = None
        try:
            output = ""
            if self.source == "file":
                output_directory = tempfile.mkdtemp(prefix="stressor-output-")
                output = os.path.join(output_directory, "output")
                os.close(os.open(output, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            if self.done == "pid" or self._uses_writer_pid:
                sleep = require_tool("sleep", "the {writer_pid} sentinel", "coreutils")
                sentinel = await start_in_group(
                    [sleep, "infinity"], stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
                )
            argv = self.command(ctx.path, sentinel.pid if sentinel else None, output)
            try:
                process = await start_in_group(
                    argv,
                    stdin=PIPE if self.done == "stdin" else DEVNULL,
                    stdout=PIPE if self.source == "stdout" else DEVNULL,
                    stderr=PIPE,
                )
            except OSError as error:
                raise CommandError(f"cannot start {argv[0]!r}: {error.strerror}") from None
            session = _Session(self, ctx, process, sentinel, output)
            try:
                await session.run()
            except ExceptionGroup as group:
                # The session's nursery wraps errors; the crash detail names the error.
                raise _single_error(group) from None
        finally:
            with trio.CancelScope(shield=True):
                if process is not None:
                    if session is None or not session.ended:
                        await end_group(process, self.grace)
                    await close_pipes(process)
                if sentinel is not None:
                    await end_process(sentinel)
            if output_directory is not None:
                shutil.rmtree(output_directory, ignore_errors=True)


class _Session:
    """One run of the program: its output, its readiness, telling it, its end."""

    def __init__(
        self,
        target: CommandTarget,
        ctx: FollowContext,
        process: trio.Process,
        sentinel: trio.Process | None,
        output: str,
    ) -> None:
        self.target = target
        self.output = output
        self.ctx = ctx
        self.process = process
        self.sentinel = sentinel
        self.parser = OutputParser()
        self.stderr = b""
        self.last_output_at = trio.current_time()
        self.output_done = trio.Event()
        self.ending = False
        self.ended = False
        self.marker_seen = trio.Event()
        self.file = _FileReader(ctx.path) if target.output == "events" else None
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

    def _consume(self, chunk: bytes) -> None:
        """Parse one chunk of the program's output and deliver the lines it completes."""
        self.last_output_at = trio.current_time()
        seen = self.parser.lines_seen
        lines = self.parser.feed(chunk)
        if self.file is not None and self.parser.lines_seen > seen:
            lines = self.file.read()
            if any(self.parser.marker in line for line in lines):
                self.parser.marker_seen = True
            lines = [line for line in lines if parse_line(line) is not None]
        for line in lines:
            self.ctx.deliver(line)
        if self.parser.marker_seen:
            self.marker_seen.set()

    async def _read_stdout(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while chunk := await read_pipe(stream, _CHUNK):
            self._consume(chunk)
        self.parser.finish()
        self.output_done.set()

    async def _read_output_file(self) -> None:
        fd = os.open(self.output, os.O_RDONLY | os.O_CLOEXEC)
        try:
            while True:
                # Checked before the read, so the last read comes after the exit.
                exited = self.process.poll() is not None
                while chunk := os.read(fd, _CHUNK):
                    self._consume(chunk)
                if exited:
                    break
                await trio.sleep(_POLL)
        finally:
            os.close(fd)
        self.parser.finish()
        self.output_done.set()

    async def _read_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while chunk := await read_pipe(stream, _CHUNK):
            self.stderr = (self.stderr + chunk)[-_STDERR_TAIL:]

    async def _wait_ready(self) -> None:
        if self.target.ready == "watch":
            # Most programs watch the file within a few milliseconds of their start,
            # so the first polls are short.
            poll = _POLL / 8
            with trio.move_on_after(self.target.ready_timeout):
                while not self._watching() and self.process.poll() is None:
                    await trio.sleep(poll)
                    poll = min(poll * 2, _POLL)
        self.ctx.ready()

    async def _tell(self) -> None:
        done = self.target.done
        if self.sentinel is not None:
            # The writer exits, so its PID goes away in every ``done`` mode.
            await end_process(self.sentinel)
        if done == "stdin" and self.process.stdin is not None:
            await self.process.stdin.aclose()
        elif done == "signal" and self.process.returncode is None:
            self.process.send_signal(self.target._signal)

    def _running(self) -> bool:
        # A zombie, or a process between closing its files and becoming a zombie,
        # is no longer running.
        return not self.ending and _alive(self.process.pid)

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

    def _write_marker(self) -> None:
        """Append the end marker, unless a partial line is pending that it would join."""
        try:
            fd = os.open(self.ctx.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except OSError:
            return  # no file to append to: the quiet timer ends the program
        try:
            size = os.fstat(fd).st_size
            if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
                os.write(fd, self.parser.marker)
        finally:
            os.close(fd)

    async def _end_when_quiet(self) -> None:
        quiet = self.target.quiet
        while not (self.parser.marker_seen or self.output_done.is_set()):
            idle_until = self.last_output_at + quiet
            if trio.current_time() >= idle_until:
                break
            with trio.move_on_at(idle_until):
                await self.marker_seen.wait()
        self.ending = True
        with trio.CancelScope(shield=True):
            await end_group(self.process, self.target.grace)
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
                if self.target.source == "file":
                    nursery.start_soon(self._read_output_file)
                else:
                    nursery.start_soon(self._read_stdout)
                nursery.start_soon(self._read_stderr)
                await self._wait_ready()
                await self.ctx.writer_done.wait()
                self.last_output_at = max(self.last_output_at, trio.current_time())
                await self._tell()
                before_fired = trio.Event()
                nursery.start_soon(self._removal_hooks, before_fired)
                if self.target.done == "never":
                    # The marker goes after the faults' late writes, so it covers them.
                    await before_fired.wait()
                    self._write_marker()
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
        if self.target.done == "signal" and code == -self.target._signal:
            return
        last = self.stderr.decode(errors="replace").strip().splitlines()[-1:]
        message = f": {last[0]}" if last else ""
        raise CommandError(f"{self.target.name} exited with status {code}{message}")


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


def _alive(pid: int) -> bool:
    """Tell whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            stat = file.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :][:1] not in ("Z", "X", "")


def _single_error(error: Exception) -> Exception:
    """Return the only error inside nested one-error groups, or ``error`` itself."""
    while isinstance(error, ExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _parse_signal(name: str) -> signal.Signals:
    text = name.upper()
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return signal.Signals[text]
    except KeyError:
        raise ValueError("name a signal such as SIGTERM, SIGINT or SIGHUP") from None


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A known program and how to run it as a target (see ``CommandTarget``)."""

    argv: tuple[str, ...]
    done: str
    description: str
    output: str = "lines"


# ``-s 0.05`` makes tail check the writer's PID (and, without inotify, the file)
# every 50 ms instead of every second, so it ends well within the hang deadline.
RECIPES = {
    "tail-F": Recipe(
        ("tail", "-n", "+1", "-s", "0.05", "-F", "{path}"),
        "never",
        "GNU tail -F: follows the name, reopens the file after rotations",
    ),
    "tail-f-descriptor": Recipe(
        ("tail", "-n", "+1", "-s", "0.05", "--follow=descriptor", "{path}"),
        "never",
        "GNU tail -f: follows the open file, not the name",
    ),
    "tail-f-pid": Recipe(
        ("tail", "-n", "+1", "-s", "0.05", "-f", "--pid={writer_pid}", "{path}"),
        "pid",
        "GNU tail -f --pid: exits once the writer's PID is gone",
    ),
    "inotifywait": Recipe(
        ("inotifywait", "-m", "-q", "-e", "modify", "{path}"),
        "never",
        "inotifywait -m (inotify-tools): reports modify events; stressor reads on each",
        output="events",
    ),
}


def recipe(name: str, /, **options: Any) -> CommandTarget:
    """Return the built-in recipe ``name`` as a target; ``options`` go to ``CommandTarget``.

    Raises:
        KeyError: no recipe has that name; the message lists them.
    """
    try:
        known = RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}") from None
    settings: dict[str, Any] = {
        "done": known.done,
        "output": known.output,
        "description": known.description,
    }
    settings.update(options)
    return CommandTarget(settings.pop("name", name), list(known.argv), **settings)
