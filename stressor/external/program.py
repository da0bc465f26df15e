"""How to run an external follower: its argument list, placeholders and settings.

``Program`` checks every setting when it is made, so a bad value fails when the
scenario loads and not in the middle of a run. The meaning of each setting is
documented on ``stressor.targets.command.CommandTarget``, which users build.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping, Sequence
from signal import Signals

from stressor.external.process import strace_prefix

DONE_MODES = ("pid", "stdin", "signal", "never")
READY_MODES = ("watch", "open", "start")
OUTPUTS = ("lines", "events")
SOURCES = ("stdout", "file", "tcp")
LIFETIMES = ("cycle", "run")
PLACEHOLDERS = ("path", "dir", "writer_pid", "output", "port")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
# The placeholder each output source fills in. The others are rejected, so a typo fails early.
_SOURCE_PLACEHOLDER = {"file": "output", "tcp": "port"}


@dataclasses.dataclass(frozen=True)
class Program:
    """The validated settings of one external follower; see ``CommandTarget``."""

    argv: Sequence[str] | str
    done: str = "never"
    output: str = "lines"
    source: str = "stdout"
    signal: str = "SIGTERM"
    ready: str = "watch"
    ready_timeout: float = 2.0
    quiet: float = 0.2
    grace: float = 0.2
    strace_delays: Mapping[str, float] = dataclasses.field(default_factory=dict)
    shell: bool = False
    lifetime: str = "cycle"
    release: float = 1.0

    def __post_init__(self) -> None:
        self._check_argv()
        for option, value, known in (
            ("done", self.done, DONE_MODES),
            ("source", self.source, SOURCES),
            ("output", self.output, OUTPUTS),
            ("ready", self.ready, READY_MODES),
            ("lifetime", self.lifetime, LIFETIMES),
        ):
            if value not in known:
                raise ValueError(f"{option} {value!r}: choose one of {', '.join(known)}")
        try:
            parse_signal(self.signal)
        except ValueError as error:
            raise ValueError(f"signal {self.signal!r}: {error}") from None
        self._check_seconds()
        self._check_placeholders()
        if self.lifetime == "run":
            self._check_run_lifetime()
        if self.strace_delays:
            strace_prefix(dict(self.strace_delays))  # fails now, not in the first cycle

    def _check_argv(self) -> None:
        argv = self.argv
        if self.shell != isinstance(argv, str):
            raise ValueError(
                f"argv {argv!r}: give one string with shell=True, a list of strings otherwise"
            )
        if not self.shell and (not argv or not all(isinstance(arg, str) for arg in argv)):
            raise ValueError(f"argv {argv!r}: give a non-empty list of strings")

    def _check_seconds(self) -> None:
        for option, seconds in (
            ("ready_timeout", self.ready_timeout),
            ("quiet", self.quiet),
            ("release", self.release),
        ):
            if not 0 < seconds <= 60:
                raise ValueError(f"{option} {seconds!r}: give seconds, more than 0, at most 60")
        if not 0 <= self.grace <= 60:
            raise ValueError(f"grace {self.grace!r}: give seconds from 0 to 60")

    def _check_placeholders(self) -> None:
        used = self.placeholders
        for source, name in _SOURCE_PLACEHOLDER.items():
            if name in used and self.source != source:
                raise ValueError(
                    f"argv {self.argv!r} uses {{{name}}}, which only source = {source!r} fills;"
                    f" set source = {source!r} or drop {{{name}}}"
                )
            if self.source == source and name not in used:
                raise ValueError(
                    f"source {source!r}: argv {self.argv!r} must pass {{{name}}} to the program,"
                    f" so that it knows where to send its output"
                )

    def _check_run_lifetime(self) -> None:
        """Check the settings of a program that outlives cycles and gets no notice per cycle."""
        for name in ("path", "writer_pid"):
            if name in self.placeholders:
                raise ValueError(
                    f"lifetime 'run': argv {self.argv!r} uses {{{name}}}, which differs in each"
                    " cycle; a program started once follows the files that appear in {dir}"
                )
        if self.done != "never":
            raise ValueError(
                f"lifetime 'run' with done {self.done!r} is invalid: a program started once"
                " gets no notice when a writer is done; set done = 'never'"
            )
        if self.output != "lines":
            raise ValueError(
                "lifetime 'run' with output 'events': events do not name their cycle;"
                " use output = 'lines', or lifetime = 'cycle'"
            )

    @property
    def placeholders(self) -> frozenset[str]:
        """The placeholders that the argument list uses."""
        words = [self.argv] if isinstance(self.argv, str) else self.argv
        return frozenset(match[1] for word in words for match in _PLACEHOLDER.finditer(word))

    @property
    def signum(self) -> Signals:
        """The signal of ``done = "signal"``."""
        return parse_signal(self.signal)

    def command(self, values: Mapping[str, str]) -> list[str]:
        """Return the argument list with placeholders replaced by ``values`` (empty if missing).

        With ``shell``, the values are shell-quoted into the one string for ``/bin/sh -c``.
        """
        if isinstance(self.argv, str):
            text = _PLACEHOLDER.sub(lambda match: shlex.quote(values.get(match[1], "")), self.argv)
            argv = ["/bin/sh", "-c", text]
        else:
            argv = [_PLACEHOLDER.sub(lambda match: values.get(match[1], ""), a) for a in self.argv]
        if self.strace_delays:
            argv = strace_prefix(dict(self.strace_delays)) + argv
        return argv

    def describe(self) -> str:
        """Return the argument list as one line, for listings."""
        return self.argv if isinstance(self.argv, str) else shlex.join(self.argv)


def parse_signal(name: str) -> Signals:
    """Return the signal called ``name`` (``SIGHUP``, ``hup``); raise ``ValueError`` otherwise."""
    text = name.upper()
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return Signals[text]
    except KeyError:
        raise ValueError("name a signal such as SIGTERM, SIGINT or SIGHUP") from None
