"""External programs as targets: ``CommandTarget`` and the built-in recipes.

A command target runs a program with ``{path}``, ``{dir}``, ``{writer_pid}``,
``{output}`` and ``{port}`` in its argument list replaced by the followed file,
its directory, the PID of a sentinel process that plays the writer, the file the
program writes its output to, and the TCP port it sends its output to. The
program runs in a process group of its own. Each stressor line in its output is
delivered; other output is counted and ignored.

With ``lifetime = "cycle"`` (the default) the program starts on each cycle's
file and must end with it. How it learns that the writer is done (``done``):

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

With ``lifetime = "run"`` one program serves the whole run and follows the files
that cycles create in ``{dir}``; ``stressor.external.resident`` tells how its
cycles end and how its leaks are found.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
from collections.abc import AsyncIterator, Sequence
from typing import Any

import trio

from stressor.external.program import Program
from stressor.external.resident import ResidentProgram
from stressor.external.session import run_for_cycle
from stressor.targets.base import FollowContext, Target

# Target names become file names and metric label values, so they stay short and plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class CommandTarget:
    """An external program as a follower: ``CommandTarget("tail-F", ["tail", "-F", "{path}"])``.

    Args:
        name: the target's name in reports and metrics (as for ``PythonTarget``).
        argv: the argument list, with ``{path}``, ``{dir}``, ``{writer_pid}``,
            ``{output}`` and ``{port}`` placeholders. With ``shell=True``, one
            string for ``/bin/sh -c``; the placeholders are then shell-quoted.
            ``{writer_pid}`` is the PID of a ``sleep`` sentinel that is killed and
            reaped when the writer exits.
        done: how the program learns the writer is done: ``pid``, ``stdin``,
            ``signal`` or ``never`` (see the module documentation).
        output: ``lines`` when the program prints the lines it read. ``events``
            when it prints one line per file event (as ``inotifywait -m``).
            Stressor then reads the file itself on each event, so lines go
            missing exactly when the program misses the events that follow them.
        source: where the program's output is read: ``stdout``; ``file``, a file
            the program writes, whose path fills ``{output}`` (created empty in a
            private directory, read every 2 ms); or ``tcp``, connections to a
            listener on 127.0.0.1 whose port fills ``{port}``.
        signal: the signal of ``done="signal"``, by name.
        ready: ``watch`` starts the writer once the program has an inotify watch
            on the file, ``open`` once it has the file open or watches it (for a
            program that watches only the directory), in either case after
            ``ready_timeout`` seconds at the latest; ``start`` starts it at once.
        ready_timeout: seconds to wait for that watch.
        quiet: with ``done="never"``, seconds of silence after which the program
            is ended (with ``lifetime="run"``, after which the cycle ends).
        grace: seconds between SIGTERM and SIGKILL when the program is ended.
        strace_delays: syscall name -> seconds: run the program under strace,
            holding each such syscall open on entry for that long (widening).
        shell: run ``argv`` through ``/bin/sh -c``; only when explicitly wanted.
        lifetime: ``cycle`` starts the program for each cycle; ``run`` starts it
            once for the whole run, following the files cycles create in ``{dir}``.
        release: with ``lifetime="run"``, seconds the program has to close the
            files of a cycle once they are removed. Anything still open then is a leak.
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
        description: str | None = None,
        **settings: Any,
    ) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"invalid target name {name!r}: use letters, digits, '.', '_' and '-',"
                " at most 64 characters, starting with a letter or digit"
            )
        unknown = sorted(set(settings) - _SETTINGS)
        if unknown:
            raise TypeError(
                f"CommandTarget got unknown settings {', '.join(unknown)};"
                f" known: {', '.join(sorted(_SETTINGS))}"
            )
        self.name = name
        self.program = Program(argv, **settings)
        self.description = description or f"external program: {self.program.describe()}"

    def __repr__(self) -> str:
        program = self.program
        return (
            f"CommandTarget({self.name!r}, {program.argv!r}, done={program.done!r},"
            f" lifetime={program.lifetime!r})"
        )

    @property
    def argv(self) -> Sequence[str] | str:
        """The argument list, placeholders unfilled."""
        return self.program.argv

    @property
    def done(self) -> str:
        """How the program learns that the writer is done."""
        return self.program.done

    def command(self, path: str, writer_pid: int | None, output: str = "") -> list[str]:
        """Return the argument list for one cycle on ``path``, placeholders filled in."""
        values = {"path": path, "dir": os.path.dirname(path), "output": output}
        if writer_pid is not None:
            values["writer_pid"] = str(writer_pid)
        return self.program.command(values)

    async def follow(self, ctx: FollowContext) -> None:
        """Run the program on ``ctx.path`` for one cycle; always end its process group.

        Raises:
            RuntimeError: with ``lifetime="run"``, outside ``open_session``; cycles
                run through ``stressor.cycle.run_cycle`` open it themselves.
        """
        if self.program.lifetime == "run":
            raise RuntimeError(
                f"target {self.name}: a long-lived program follows within open_session();"
                " run cycles through stressor.cycle.run_cycle, which opens it"
            )
        await run_for_cycle(self.name, self.program, ctx)

    @contextlib.asynccontextmanager
    async def open_session(self, directory: str) -> AsyncIterator[Target]:
        """Yield the target to run cycles with, for a run in ``directory``.

        With ``lifetime="cycle"`` that is this target. With ``lifetime="run"`` it
        is a follower bound to one long-lived program, whose files live in
        ``directory/NAME``; leaving the session ends the program and removes them.
        """
        if self.program.lifetime != "run":
            yield self
            return
        # The real path, because /proc names the program's open files by their real path.
        shared = os.path.realpath(os.path.join(directory, self.name))
        os.makedirs(shared, 0o700, exist_ok=True)
        try:
            async with trio.open_nursery() as nursery:
                resident = ResidentProgram(self.name, self.program, shared, nursery)
                try:
                    yield ResidentTarget(self.name, self.description, resident)
                finally:
                    with trio.CancelScope(shield=True):
                        await resident.stop()
                    nursery.cancel_scope.cancel()
        finally:
            shutil.rmtree(shared, ignore_errors=True)


class ResidentTarget:
    """A command target's long-lived program, as the cycles of one run see it."""

    def __init__(self, name: str, description: str, resident: ResidentProgram) -> None:
        self.name = name
        self.description = description
        self.resident = resident

    @property
    def shared_directory(self) -> str:
        """The directory where each cycle creates its file, ``{dir}`` of the program."""
        return self.resident.directory

    async def follow(self, ctx: FollowContext) -> None:
        """Follow one cycle's file with the long-lived program."""
        await self.resident.follow(ctx)

    async def check_release(
        self, ctx: FollowContext, prefix: str, removed: set[tuple[int, int]]
    ) -> str:
        """Describe the descriptors and watches the program keeps on the cycle's removed files."""
        return await self.resident.check_release(ctx, prefix, removed)


_SETTINGS = frozenset(field.name for field in dataclasses.fields(Program)) - {"argv"}


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
