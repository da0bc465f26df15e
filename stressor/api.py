"""The Python API: stress followers from Python inside trio and get a result object.

An example, inside ``trio.run`` or a pytest-trio test::

    import stressor

    async def follow(path, watcher, writer_done, deliver):
        ...  # the protocol of stressor.targets.python

    mine = stressor.PythonTarget("mine", follow)
    scenario = stressor.build_scenario([mine, "docker-1.12.1"], cycles=200, seed=7)
    result = await stressor.run(scenario)
    result.assert_ok()

``run`` serves no metrics and installs no signal handlers: the caller owns the
process. It runs on real files with kernel inotify.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from stressor._version import __version__
from stressor.engine import RunObserver, run_stress
from stressor.record import RunRecord
from stressor.replay import replay_command
from stressor.reports import RunReport, report_run
from stressor.results import CycleResult
from stressor.scenario import BUILTIN_EXPECTATIONS, ConfigError, Expectation, Scenario
from stressor.summary import Reproduction
from stressor.targets import BUILTIN_TARGETS, Target
from stressor.witnesses import pick_witnesses

ReplayCommand = Callable[[str, int, int], str]
"""Build the command that replays one cycle, from (target, seed, cycle index)."""

# The hint in the message of an unexpected finding on how to tolerate it (see ``judge``).
TOLERATE_HINT = "allow {finding!r} for {target!r}"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One cycle that showed a finding, and how to replay it.

    Attributes:
        target: the target's name.
        outcome: the finding, such as ``hang`` or ``lost``.
        seed: the run seed.
        cycle: the cycle index.
        faults: labels of the faults the cycle injected.
        detail: a sentence on what went wrong, empty for line findings.
        replay: the command that runs the cycle again with the same schedule.
    """

    target: str
    outcome: str
    seed: int
    cycle: int
    faults: tuple[str, ...]
    detail: str
    replay: str


@dataclasses.dataclass(frozen=True)
class TargetResult:
    """The verdict and measurements of one target: the fields of a target in the JSON report.

    Attributes:
        name: the target's name.
        cycles: cycles that finished.
        passed: whether the target met its expectation.
        problems: why it did not, one sentence each.
        outcomes: cycles by most serious finding, ``ok`` included.
        findings: cycles that showed each finding.
        window_hits: cycles whose fault landed between the writer's exit and the
            follower's watch removal or return.
        lines: lines written, read, lost, duplicated, reordered and torn.
        delivery_latency_seconds: p50, p90, p99 and max from write to delivery.
        exit_latency_seconds: p50, p90, p99 and max from the writer's exit to the
            follower's return.
        hangs: every hung cycle, with its replay command.
        first_findings: for each finding, the cycle with the lowest index that showed it.
    """

    name: str
    cycles: int
    passed: bool
    problems: tuple[str, ...]
    outcomes: dict[str, int]
    findings: dict[str, int]
    window_hits: int
    lines: dict[str, int]
    delivery_latency_seconds: dict[str, float | None]
    exit_latency_seconds: dict[str, float | None]
    hangs: tuple[Finding, ...]
    first_findings: dict[str, Finding]


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The result of ``run`` or ``replay_cycle``: the JSON report's fields, and the scenario.

    Attributes:
        scenario: the scenario that ran, with its targets; ``replay_cycle`` takes it.
        stressor_version: the version of stressor that ran it.
        seed: the run seed.
        started_at: when the run started (UTC).
        finished_at: when it finished (UTC).
        interrupted: whether it was stopped before its end.
        passed: whether every target met its expectation.
        targets: per target, in the scenario's order.
        report: the JSON-ready report, as ``stressor run --report`` writes it.
    """

    scenario: Scenario
    stressor_version: str
    seed: int
    started_at: datetime.datetime
    finished_at: datetime.datetime | None
    interrupted: bool
    passed: bool
    targets: dict[str, TargetResult]
    report: dict[str, object] = dataclasses.field(repr=False)

    @property
    def hangs(self) -> list[Finding]:
        """Return every hung cycle of every target."""
        return [hang for target in self.targets.values() for hang in target.hangs]

    def failure_message(self) -> str:
        """Return why the run failed, with replay commands; empty when it passed."""
        if self.passed:
            return ""
        lines = [f"stressor run failed (seed {self.seed}):"]
        for target in self.targets.values():
            for problem in target.problems:
                lines.append(f"  {problem}")
            if target.passed:
                continue
            expectation = self.scenario.expectation_for(target.name)
            tolerated = expectation.expect | expectation.allow
            for outcome, finding in target.first_findings.items():
                if outcome in tolerated:
                    continue
                faults = ", ".join(finding.faults) or "none"
                lines.append(
                    f"  first {outcome}: cycle {finding.cycle} (faults: {faults})"
                    + (f": {finding.detail}" if finding.detail else "")
                )
                lines.append(f"    replay: {finding.replay}")
        if self.interrupted:
            lines.append("  the run was interrupted before its end")
        return "\n".join(lines)

    def assert_ok(self) -> None:
        """Raise ``AssertionError`` with ``failure_message()`` unless the run passed."""
        if not self.passed:
            raise AssertionError(self.failure_message())


def with_targets(scenario: Scenario, targets: Sequence[Target | str]) -> Scenario:
    """Return ``scenario`` stressing ``targets``: built-in names or target objects.

    Target objects that are not built in become the scenario's ``extra_targets``
    for this run only; nothing is registered globally.

    Raises:
        ConfigError: a name is unknown, repeated, or an extra target takes a
            built-in target's name.
    """
    names = []
    extra = dict(scenario.extra_targets)
    for target in targets:
        if isinstance(target, str):
            names.append(target)
            continue
        name = getattr(target, "name", None)
        if not isinstance(name, str):
            raise ConfigError("targets", target, "give a target name or an object with a name")
        names.append(name)
        if BUILTIN_TARGETS.get(name) is not target:
            extra[name] = target
    return dataclasses.replace(scenario, targets=tuple(names), extra_targets=extra)


def build_scenario(
    targets: Sequence[Target | str] = tuple(BUILTIN_TARGETS),
    *,
    cycles: int | None = None,
    duration: float | None = None,
    expect: Mapping[str, Iterable[str]] | None = None,
    allow: Mapping[str, Iterable[str]] | None = None,
    **settings: Any,
) -> Scenario:
    """Return a checked scenario that stresses ``targets``: built-in names or target objects.

    Args:
        targets: what to stress; target objects that are not built in, such as
            ``PythonTarget``, join the scenario's ``extra_targets``.
        cycles: cycles per target.
        duration: seconds during which new cycles start; used when ``cycles`` is
            not given, 12 when neither is.
        expect: target name -> findings it must show at least once.
        allow: target name -> findings it may show.
        settings: further ``Scenario`` fields, such as ``seed``, ``concurrency`` or
            ``deadline``.

    A target named in ``expect`` or ``allow`` gets exactly that expectation. A
    built-in target named in neither keeps its built-in one, as on the command line.

    Raises:
        ConfigError: a value is invalid.
    """
    expect = expect or {}
    allow = allow or {}
    if cycles is not None:
        settings.update(cycles=cycles, duration=None)
    elif duration is not None:
        settings["duration"] = duration
    names = [target if isinstance(target, str) else target.name for target in targets]
    expectations = {name: e for name, e in BUILTIN_EXPECTATIONS.items() if name in names}
    for name in {*expect, *allow}:
        if name not in names:
            raise ConfigError("expect/allow", name, f"not a target of the run ({', '.join(names)})")
        expectations[name] = Expectation(
            frozenset(expect.get(name, ())), frozenset(allow.get(name, ()))
        )
    return with_targets(Scenario(expectations=expectations, **settings), targets)


async def run(
    scenario: Scenario,
    *,
    targets: Sequence[Target | str] | None = None,
    observers: Sequence[RunObserver] = (),
    replay: ReplayCommand | None = None,
) -> RunResult:
    """Run ``scenario`` in the current trio run and return its result.

    Args:
        scenario: what to run; it must be bounded by ``cycles`` or ``duration``.
        targets: built-in target names or target objects (such as
            ``PythonTarget``) to stress instead of ``scenario.targets``.
        observers: objects notified of each cycle's start and end while the run goes on.
        replay: builds the replay command of each finding; by default
            ``stressor replay`` for built-in targets and a call of ``replay_cycle``
            for the others.

    Raises:
        ConfigError: the scenario is invalid for this machine or unbounded.
        OSError: the temporary directory for the cycle files could not be created.
    """
    if targets is not None:
        scenario = with_targets(scenario, targets)
    if scenario.cycles is None and scenario.duration is None:
        raise ConfigError("cycles/duration", None, "bound the run with cycles or duration")
    record = RunRecord(scenario)
    await run_stress(scenario, record, observers)
    return _result(record, replay)


async def replay_cycle(
    scenario: Scenario,
    target: Target | str,
    cycle: int,
    *,
    repeat: int = 1,
    observers: Sequence[RunObserver] = (),
    replay: ReplayCommand | None = None,
) -> RunResult:
    """Run cycle ``cycle`` of ``target`` again, ``repeat`` times, with the schedule it had.

    The schedule comes from ``scenario.seed`` and the cycle index, so pass the
    scenario of the run that found the problem, such as ``RunResult.scenario``.

    Raises:
        ConfigError: ``cycle`` or ``repeat`` is invalid, or the target is unknown.
    """
    if isinstance(cycle, bool) or not isinstance(cycle, int) or cycle < 0:
        raise ConfigError("cycle", cycle, "must be an integer of 0 or more")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ConfigError("repeat", repeat, "must be an integer of 1 or more")
    scenario = with_targets(scenario, [target])
    record = RunRecord(scenario)
    # One cycle at a time: the cycle's file is named after its index.
    for _ in range(repeat):
        await run_stress(scenario, record, observers, cycle_indices=[cycle])
    return _result(record, replay)


def default_replay_command(scenario: Scenario) -> ReplayCommand:
    """Return how ``run`` spells replay commands for ``scenario`` by default."""
    command_line = functools.partial(replay_command, scenario, scenario_path=None)

    def build(target: str, seed: int, cycle: int) -> str:
        if target in scenario.extra_targets:
            return f"await stressor.replay_cycle(result.scenario, {target!r}, cycle={cycle})"
        return command_line(target, seed, cycle)

    return build


def _result(record: RunRecord, replay: ReplayCommand | None) -> RunResult:
    scenario = record.scenario
    build = replay or default_replay_command(scenario)
    report = report_run(
        record, version=__version__, scenario_path=None, replay=build, tolerate_hint=TOLERATE_HINT
    )
    witnesses = pick_witnesses(record.results)
    targets = {
        name: _target_result(name, report, witnesses.get(name, {}), build)
        for name in report.summaries
    }
    return RunResult(
        scenario=scenario,
        stressor_version=__version__,
        seed=scenario.seed,
        started_at=record.started_at,
        finished_at=record.finished_at,
        interrupted=record.interrupted,
        passed=report.passed,
        targets=targets,
        report=report.document,
    )


def _target_result(
    name: str, report: RunReport, witnesses: dict[str, CycleResult], build: ReplayCommand
) -> TargetResult:
    summary = report.summaries[name]
    targets = cast(dict[str, dict[str, Any]], report.document["targets"])
    entry = targets[name]

    def finding(outcome: str, reproduction: Reproduction | CycleResult) -> Finding:
        seed, cycle = reproduction.seed, reproduction.cycle
        return Finding(
            target=name,
            outcome=outcome,
            seed=seed,
            cycle=cycle,
            faults=tuple(reproduction.faults),
            detail=reproduction.detail,
            replay=build(name, seed, cycle),
        )

    first = {
        outcome: finding(outcome, result)
        for outcome, result in sorted(witnesses.items())
        if outcome in summary.findings
    }
    return TargetResult(
        name=name,
        cycles=summary.cycles,
        passed=not report.problems[name],
        problems=tuple(report.problems[name]),
        outcomes=dict(summary.outcomes),
        findings=dict(summary.findings),
        window_hits=summary.window_hits,
        lines=dict(entry["lines"]),
        delivery_latency_seconds=dict(entry["delivery_latency_seconds"]),
        exit_latency_seconds=dict(entry["exit_latency_seconds"]),
        hangs=tuple(finding("hang", hang) for hang in summary.hangs),
        first_findings=first,
    )
