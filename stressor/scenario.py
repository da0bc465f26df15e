"""Scenarios: what a run stresses, for how long, with which faults and expectations.

A scenario is checked once, when it is built; every invalid value raises
``ConfigError`` naming the option, the value and the fix.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Collection

from stressor.backends import BACKENDS
from stressor.cycle import CycleSetup
from stressor.faults import WINDOW_POINTS, FaultSpec
from stressor.formats import FORMATS
from stressor.hooks import HookPoint, parse_hook_point
from stressor.results import FINDINGS
from stressor.rotations import ROTATION_METHODS
from stressor.schedule import Schedule, make_schedule
from stressor.targets import BUILTIN_TARGETS, Target, get_target
from stressor.targets.command import RECIPES, CommandTarget

MAX_CONCURRENCY = 4096
MAX_LINES = 100_000
MAX_SEED = 2**64 - 1
DEFAULT_METRICS_PORT = 9466


class ConfigError(ValueError):
    """An invalid option or setting; the message names it, shows the value and gives the fix."""

    def __init__(self, option: str, value: object, fix: str) -> None:
        super().__init__(f"{option}: invalid value {value!r}: {fix}")
        self.option = option
        self.value = value


@dataclasses.dataclass(frozen=True)
class Expectation:
    """The outcomes of one target: ``expect`` must appear at least once, ``allow`` may appear.

    A finding that is in neither set fails the target.
    """

    expect: frozenset[str] = frozenset()
    allow: frozenset[str] = frozenset()


# The default scenario's targets: the positive control, the fix that clears it, and
# the two negative controls.
DEFAULT_TARGETS = ("reference", "polling", "docker-1.12.1", "docker-1.13.0")

# The known behaviour of the built-in models under the default faults.
BUILTIN_EXPECTATIONS = {
    "docker-1.12.1": Expectation(expect=frozenset({"hang"}), allow=frozenset({"lost"})),
    "docker-1.13.0": Expectation(allow=frozenset({"lost"})),
    "docker-17.12.0": Expectation(allow=frozenset({"lost"})),
}


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A complete, checked description of one run.

    Attributes:
        targets: names of the followers under test.
        cycles: cycles per target; exactly one of ``cycles`` and ``duration`` is set.
        duration: seconds during which new cycles start.
        concurrency: cycles running at once.
        seed: the run seed; every random choice derives from it and the cycle index.
        lines: lines the writer writes per cycle before it exits.
        max_gap: largest pause before each line, in seconds.
        catch_up: whether the writer waits for the follower to deliver its lines before
            it exits, so the exit finds the follower idle, as a quiet container does.
        settle: pause after the writer's last line before it exits, in seconds.
        points: hook points where late writes land; one is drawn per cycle; empty
            for no late writes.
        fault_probability: chance that a cycle gets a late write.
        faults: further faults (partial lines, bursts, pauses, rotations).
        line_format: the writer's line format, one of ``FORMATS``.
        symlink: follow a symlink to the log file in another directory.
        rotate_every: rotate before every this-many writer lines, like a logger with a
            maximum file size; 0 for never.
        rotate_method: the rotation method of those rotations.
        check_leaks: check the follower's descriptors and inotify watches after each
            cycle; needs a concurrency of 1 and the real backend.
        backend: ``real`` files with kernel inotify, or ``fake`` files (pyfakefs) with
            a simulated inotify, on which ``stressor replay`` is exact.
        deadline: seconds without progress after the writer's exit that make a hang.
        max_wait: seconds after the writer's exit after which a cycle ends as a hang.
        expectations: per target; a target without an entry must show no finding.
        metrics_port: port of the metrics endpoint, 0 for none.
        endless: a soak: cycles go on until the run is stopped, unless ``duration``
            or ``cycles`` bounds it.
        extra_targets: followers that are not built in, by name, for this run only,
            such as Python followers of the API; ``targets`` may name them.
    """

    targets: tuple[str, ...] = DEFAULT_TARGETS
    cycles: int | None = None
    duration: float | None = 12.0
    concurrency: int = 16
    seed: int = 0
    lines: int = 10
    max_gap: float = 0.0005
    catch_up: bool = True
    settle: float = 0.001
    points: tuple[HookPoint, ...] = WINDOW_POINTS
    fault_probability: float = 1.0
    faults: tuple[FaultSpec, ...] = ()
    line_format: str = "docker-json"
    symlink: bool = False
    rotate_every: int = 0
    rotate_method: str = "rename-create"
    check_leaks: bool = False
    backend: str = "real"
    deadline: float = 1.0
    max_wait: float = 10.0
    expectations: dict[str, Expectation] = dataclasses.field(
        default_factory=lambda: dict(BUILTIN_EXPECTATIONS)
    )
    metrics_port: int = DEFAULT_METRICS_PORT
    endless: bool = False
    extra_targets: dict[str, Target] = dataclasses.field(default_factory=dict)
    sources: dict[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    """The origin of each field not set on the command line, e.g. ``x.toml: writer.lines``."""

    def __post_init__(self) -> None:
        label = self._label
        self._check_run(label)
        self._check_timing(label)
        self._check_expectations_and_faults(label)
        self._check_writer(label)
        self._check_backend(label)

    def _check_run(self, label: Callable[[str], str]) -> None:
        """Check the targets, the run's length, concurrency, seed, lines and port."""
        _check_extra_targets(self.extra_targets)
        _check_targets(label("targets"), self.targets, self.extra_targets)
        if not (self.endless and self.cycles is None and self.duration is None):
            _check_length(label("cycles"), label("duration"), self.cycles, self.duration)
        _check_int(label("concurrency"), self.concurrency, 1, MAX_CONCURRENCY)
        _check_int(label("seed"), self.seed, 0, MAX_SEED)
        _check_int(label("lines"), self.lines, 0, MAX_LINES)
        _check_int(label("metrics_port"), self.metrics_port, 0, 65535)

    def _check_timing(self, label: Callable[[str], str]) -> None:
        """Check the pauses and the hang limits."""
        _check_seconds(label("max_gap"), self.max_gap, allow_zero=True)
        _check_seconds(label("settle"), self.settle, allow_zero=True)
        _check_seconds(label("deadline"), self.deadline, allow_zero=False)
        _check_seconds(label("max_wait"), self.max_wait, allow_zero=False)
        if not isinstance(self.catch_up, bool):
            raise ConfigError(label("catch_up"), self.catch_up, "must be true or false")
        if self.max_wait < self.deadline:
            raise ConfigError(
                label("max_wait"),
                self.max_wait,
                f"must be at least {label('deadline')} ({self.deadline:g})",
            )

    def _check_expectations_and_faults(self, label: Callable[[str], str]) -> None:
        """Check the late-write probability, the expectations and the faults."""
        probability = self.fault_probability
        if isinstance(probability, bool) or not isinstance(probability, (int, float)):
            raise ConfigError(label("fault_probability"), probability, "must be a number")
        if not 0.0 <= probability <= 1.0:
            raise ConfigError(label("fault_probability"), probability, "must be between 0 and 1")
        for name, expectation in self.expectations.items():
            _check_expectation(label("expectations"), name, expectation)

    def _check_writer(self, label: Callable[[str], str]) -> None:
        """Check the line format, the symlink and the writer's own rotations."""
        if self.line_format not in FORMATS:
            raise ConfigError(label("line_format"), self.line_format, _choices(FORMATS))
        if not isinstance(self.symlink, bool):
            raise ConfigError(label("symlink"), self.symlink, "must be true or false")
        self._check_faults(label("faults"))
        _check_int(label("rotate_every"), self.rotate_every, 0, MAX_LINES)
        if self.rotate_method not in ROTATION_METHODS:
            raise ConfigError(
                label("rotate_method"), self.rotate_method, _choices(ROTATION_METHODS)
            )
        if self.rotate_method == "symlink-swap" and self.rotate_every and not self.symlink:
            raise ConfigError(
                label("rotate_method"), self.rotate_method, "a symlink swap needs symlink = true"
            )

    def _check_backend(self, label: Callable[[str], str]) -> None:
        """Check the leak checks and the backend, which constrain each other."""
        if not isinstance(self.check_leaks, bool):
            raise ConfigError(label("check_leaks"), self.check_leaks, "must be true or false")
        if self.check_leaks and self.concurrency != 1:
            raise ConfigError(
                label("check_leaks"),
                self.check_leaks,
                f"leak checks count the whole process's descriptors, so they need"
                f" --concurrency 1 (not {self.concurrency})",
            )
        if self.backend not in BACKENDS:
            raise ConfigError(label("backend"), self.backend, _choices(BACKENDS))
        if self.check_leaks and self.backend == "fake":
            raise ConfigError(
                f"{label('check_leaks')}/{label('backend')}",
                (self.check_leaks, self.backend),
                "leak checks read /proc, which cannot see fake files and simulated"
                " watches; use the real backend or turn check_leaks off",
            )
        if self.backend == "fake":
            programs = [
                name
                for name in self.targets
                if isinstance(self.extra_targets.get(name), CommandTarget)
            ]
            if programs:
                raise ConfigError(
                    label("backend"),
                    self.backend,
                    f"external programs ({', '.join(programs)}) read real files only;"
                    " use --backend real, or leave them out of the targets",
                )

    def _check_faults(self, label: str) -> None:
        for index, spec in enumerate(self.faults):
            for key, value, fix in spec.problems():
                raise ConfigError(f"{label}[{index}].{key}", value, fix)
            if spec.kind == "rotate" and spec.method == "symlink-swap" and not self.symlink:
                raise ConfigError(
                    f"{label}[{index}].method",
                    spec.method,
                    "a symlink swap needs a symlink to follow; set symlink = true in [writer]",
                )

    def _label(self, field: str) -> str:
        """Name a field in an error the way the user set it: a file key or an option."""
        return self.sources.get(field, "--" + field.replace("_", "-"))

    def schedule(self, cycle: int) -> Schedule:
        """Draw the schedule of cycle ``cycle`` of this run."""
        return make_schedule(
            self.seed,
            cycle,
            lines=self.lines,
            max_gap=self.max_gap,
            catch_up=self.catch_up,
            settle=self.settle,
            points=self.points,
            fault_probability=self.fault_probability,
            extra_faults=self.faults,
        )

    def cycle_setup(self) -> CycleSetup:
        """Return how each cycle's file is laid out and written."""
        return CycleSetup(
            line_format=self.line_format,
            symlink=self.symlink,
            rotate_every=self.rotate_every,
            rotate_method=self.rotate_method,
            check_leaks=self.check_leaks,
            backend=self.backend,
        )

    def expectation_for(self, target: str) -> Expectation:
        """Return the expectation of ``target``; without one it must show no finding."""
        return self.expectations.get(target, Expectation())

    def target(self, name: str) -> Target:
        """Return the follower called ``name``: one of ``extra_targets`` or a built-in one."""
        extra = self.extra_targets.get(name)
        return extra if extra is not None else get_target(name)


def new_seed() -> int:
    """Return a fresh random run seed, for runs that were not given one."""
    return secrets.randbits(32)


def parse_points(texts: list[str]) -> tuple[HookPoint, ...]:
    """Parse ``--point`` values; raise ``ConfigError`` for an unknown one."""
    points = []
    for text in texts:
        try:
            points.append(parse_hook_point(text))
        except ValueError as error:
            raise ConfigError("--point", text, str(error).split(": ", 1)[1]) from None
    return tuple(dict.fromkeys(points))


def parse_outcome_option(option: str, text: str, extra: Collection[str] = ()) -> tuple[str, str]:
    """Parse ``NAME=OUTCOME`` of ``--expect`` or ``--allow`` into (target, outcome).

    ``extra`` names targets of this run besides the built-in ones (commands, recipes).
    """
    name, sep, outcome = text.partition("=")
    if not sep or not name or not outcome:
        raise ConfigError(option, text, "write it as TARGET=OUTCOME, e.g. docker-1.12.1=hang")
    if name not in BUILTIN_TARGETS and name not in extra:
        raise ConfigError(option, text, f"unknown target {name!r}; {_target_choices()}")
    if outcome not in FINDINGS:
        raise ConfigError(option, text, f"unknown outcome {outcome!r}; {_outcome_choices()}")
    return name, outcome


def build_expectations(
    targets: tuple[str, ...],
    layers: list[tuple[list[tuple[str, str]], list[tuple[str, str]], str]],
    extra: Collection[str] = (),
) -> dict[str, Expectation]:
    """Combine the built-in expectations with layers of (expect, allow, label) pairs.

    Each layer (a scenario file, then the command line) replaces the whole
    expectation of every target it names, so a layer states a target's
    expectation in full. ``extra`` names the run's targets that are not built in.
    """
    result = {name: e for name, e in BUILTIN_EXPECTATIONS.items() if name in targets}
    for expect, allow, label in layers:
        named = {name: f"{name}={outcome}" for name, outcome in expect + allow}
        for name, given in named.items():
            if name not in BUILTIN_TARGETS and name not in extra:
                raise ConfigError(label, given, f"unknown target; {_target_choices()}")
            if name not in targets:
                raise ConfigError(
                    label, given, f"the target is not part of the run; add --target {name}"
                )
            result[name] = Expectation(
                expect=frozenset(outcome for target, outcome in expect if target == name),
                allow=frozenset(outcome for target, outcome in allow if target == name),
            )
    return result


def _choices(values: tuple[str, ...]) -> str:
    return "choose one of " + ", ".join(values)


def _target_choices() -> str:
    names = [*BUILTIN_TARGETS, *RECIPES]
    return "choose one of " + ", ".join(names) + " (see `stressor targets`)"


def _outcome_choices() -> str:
    return "choose one of " + ", ".join(FINDINGS)


def _check_targets(label: str, targets: tuple[str, ...], extra: dict[str, Target]) -> None:
    label = label.replace("--targets", "--target")
    choices = _target_choices()
    if extra:
        choices = f"{choices}, or one of the extra targets {', '.join(extra)}"
    if not targets:
        raise ConfigError(label, "", f"name at least one target; {choices}")
    for name in targets:
        if not isinstance(name, str) or (name not in BUILTIN_TARGETS and name not in extra):
            raise ConfigError(label, name, choices)
    if len(set(targets)) != len(targets):
        raise ConfigError(label, ",".join(targets), "name each target only once")


def _check_extra_targets(extra: dict[str, Target]) -> None:
    for name, target in extra.items():
        if name in BUILTIN_TARGETS:
            raise ConfigError(
                "extra_targets", name, "a built-in target has this name; choose another name"
            )
        if getattr(target, "name", None) != name:
            raise ConfigError(
                "extra_targets",
                name,
                f"the target is named {getattr(target, 'name', None)!r}; key it by its name",
            )


def _check_length(
    cycles_label: str, duration_label: str, cycles: int | None, duration: float | None
) -> None:
    if (cycles is None) == (duration is None):
        raise ConfigError(
            f"{cycles_label}/{duration_label}", (cycles, duration), "give exactly one of them"
        )
    if cycles is not None:
        _check_int(cycles_label, cycles, 1, 10**9)
    if duration is not None:
        _check_seconds(duration_label, duration, allow_zero=False)


def _check_int(option: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(option, value, f"must be an integer from {low} to {high}")


def _check_seconds(option: str, value: object, *, allow_zero: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(option, value, "must be a number of seconds")
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(option, value, "must be a finite number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "more than 0"
        raise ConfigError(option, value, f"must be {bound} seconds")


def _check_expectation(label: str, name: str, expectation: Expectation) -> None:
    label = label.replace("--expectations", "--expect/--allow")
    for outcome in expectation.expect | expectation.allow:
        if outcome not in FINDINGS:
            raise ConfigError(label, f"{name}={outcome}", _outcome_choices())
