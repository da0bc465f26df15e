"""How to run an external follower: its argument list, placeholders and settings.

``Program`` checks every setting when it is made, so a bad value fails when the
scenario loads and not in the middle of a run. The meaning of each setting is
documented on ``stressor.targets.command.CommandTarget``, which users build.
"""

from __future__ import annotations

import dataclasses
import math
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
# Candidate placeholders: lower-case words in braces, except a shell's ${NAME}.
_BRACED = re.compile(r"(?<!\$)\{([a-z_]+)\}")
_SYSCALL = re.compile(r"[a-z_][a-z0-9_]{0,63}")
# Seconds a long-lived program has, by default, to let go of a cycle's removed files.
DEFAULT_RELEASE = 1.0
# The placeholder each output source fills in. The others are rejected, so a typo fails early.
_SOURCE_PLACEHOLDER = {"file": "output", "tcp": "port"}


class SettingError(ValueError):
    """An invalid setting of an external follower: names the key, the value and the fix."""

    def __init__(self, key: str, value: object, fix: str) -> None:
        super().__init__(f"{key} {value!r}: {fix}")
        self.key = key
        self.value = value
        self.fix = fix


@dataclasses.dataclass(frozen=True)
class Program:
    """The validated settings of one external follower; see ``CommandTarget``.

    Raises:
        SettingError: a setting is invalid; it names the key.
        MissingToolError: ``strace_delays`` is set and strace is not installed.
    """

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
    # None: the default of a long-lived program, which ``release_seconds`` gives.
    release: float | None = None

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
                raise SettingError(option, value, f"choose one of {', '.join(known)}")
        try:
            parse_signal(self.signal)
        except ValueError as error:
            raise SettingError("signal", self.signal, str(error)) from None
        self._check_seconds()
        self._check_strace_delays()
        self._check_placeholders()
        if self.lifetime == "run":
            self._check_run_lifetime()
        elif self.release is not None:
            raise SettingError(
                "release",
                self.release,
                "applies to lifetime = 'run' only; remove it, or set lifetime = 'run'",
            )
        if self.strace_delays:
            strace_prefix(dict(self.strace_delays))  # fails now, not in the first cycle

    @property
    def release_seconds(self) -> float:
        """Seconds a long-lived program has to let go of a cycle's removed files."""
        return DEFAULT_RELEASE if self.release is None else self.release

    def _check_argv(self) -> None:
        argv = self.argv
        if self.shell != isinstance(argv, str):
            raise SettingError(
                "argv", argv, "give one string with shell = true, a list of strings otherwise"
            )
        if not self.shell and (not argv or not all(isinstance(arg, str) for arg in argv)):
            raise SettingError("argv", argv, "give a non-empty list of strings")
        words = [argv] if isinstance(argv, str) else argv
        for word in words:
            for match in _BRACED.finditer(word):
                if match[1] not in PLACEHOLDERS:
                    known = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
                    raise SettingError(
                        "argv", argv, f"unknown placeholder {match[0]}; known: {known}"
                    )

    def _check_seconds(self) -> None:
        for option, seconds in (
            ("ready_timeout", self.ready_timeout),
            ("quiet", self.quiet),
            ("release", self.release_seconds),
        ):
            if not _is_seconds(seconds) or not 0 < seconds <= 60:
                raise SettingError(option, seconds, "give seconds, more than 0, at most 60")
        if not _is_seconds(self.grace) or not 0 <= self.grace <= 60:
            raise SettingError("grace", self.grace, "give seconds from 0 to 60")

    def _check_strace_delays(self) -> None:
        if not isinstance(self.strace_delays, Mapping):
            raise SettingError(
                "strace_delays", self.strace_delays, "give a table of syscall = seconds"
            )
        for syscall, seconds in self.strace_delays.items():
            if not isinstance(syscall, str) or not _SYSCALL.fullmatch(syscall):
                raise SettingError(
                    "strace_delays", syscall, "name a system call, such as close or read"
                )
            if not _is_seconds(seconds) or not 0 < seconds <= 60:
                raise SettingError(
                    f"strace_delays.{syscall}", seconds, "give seconds, more than 0, at most 60"
                )

    def _check_placeholders(self) -> None:
        used = self.placeholders
        for source, name in _SOURCE_PLACEHOLDER.items():
            if name in used and self.source != source:
                raise SettingError(
                    "argv",
                    self.argv,
                    f"{{{name}}} is filled only with source = {source!r};"
                    f" set source = {source!r} or drop {{{name}}}",
                )
            if self.source == source and name not in used:
                raise SettingError(
                    "source",
                    source,
                    f"argv must pass {{{name}}} to the program, so that it knows where to"
                    " send its output",
                )

    def _check_run_lifetime(self) -> None:
        """Check the settings of a program that outlives cycles and gets no notice per cycle."""
        for name in ("path", "writer_pid"):
            if name in self.placeholders:
                raise SettingError(
                    "argv",
                    self.argv,
                    f"{{{name}}} differs in each cycle, so lifetime = 'run' cannot use it;"
                    " a program started once follows the files that appear in {dir}",
                )
        if "dir" not in self.placeholders:
            raise SettingError(
                "argv",
                self.argv,
                "lifetime = 'run' needs {dir}: the program must follow the files that"
                " cycles create in that private directory",
            )
        if self.done != "never":
            raise SettingError(
                "done",
                self.done,
                "a program with lifetime = 'run' gets no notice when a writer is done;"
                " set done = 'never'",
            )
        if self.output != "lines":
            raise SettingError(
                "output",
                self.output,
                "events do not name their cycle, so lifetime = 'run' needs output = 'lines'",
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


def _is_seconds(value: object) -> bool:
    """Tell whether ``value`` is a finite number of seconds (a bool is not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_signal(name: str) -> Signals:
    """Return the signal called ``name`` (``SIGHUP``, ``hup``); raise ``ValueError`` otherwise."""
    text = name.upper()
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return Signals[text]
    except KeyError:
        raise ValueError("name a signal such as SIGTERM, SIGINT or SIGHUP") from None
