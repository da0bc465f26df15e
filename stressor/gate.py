"""The pre-release gate: judge a finished run against its thresholds and expectations.

A gate passes when every threshold holds on every target it names, every target
met its expectation and the run was not interrupted. Expectations still count, so
a positive control that was not caught fails the gate: a run that could not catch
the known bug could not have caught a new one either.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

from stressor.record import RunRecord
from stressor.replay import replay_command
from stressor.reports import RunReport, report_run
from stressor.scenario import Expectation
from stressor.summary import TargetSummary
from stressor.thresholds import METRICS, Threshold, ThresholdResult, evaluate_thresholds
from stressor.witnesses import pick_witnesses

THRESHOLD = "threshold"
EXPECTATION = "expectation"
INTERRUPTION = "interruption"


@dataclasses.dataclass(frozen=True)
class GateCase:
    """One test case of the gate: a threshold on one target, or one target's expectation.

    Attributes:
        target: the target's name; ``run`` for the case of an interrupted run.
        name: the check, such as ``hangs == 0``, or the expectation in words.
        kind: ``THRESHOLD``, ``EXPECTATION`` or ``INTERRUPTION``.
        passed: whether the case passed.
        message: one line on what was measured, and why the case failed if it did.
        replay: the command that replays a cycle showing the failure, or None.
        source: where a threshold was declared, or None.
    """

    target: str
    name: str
    kind: str
    passed: bool
    message: str
    replay: str | None = None
    source: str | None = None


@dataclasses.dataclass(frozen=True)
class GateResult:
    """A judged gate: the run's report, its threshold results and its test cases.

    Attributes:
        report: the run judged against its expectations, as ``stressor run`` reports it.
        thresholds: each threshold judged on each target it names.
        cases: the test cases, grouped by target: the expectation, then thresholds.
        replays: each threshold result's replay command, or None, in the same order.
        scenario_path: the scenario file.
        duration: seconds from the run's start to its end.
    """

    report: RunReport
    thresholds: list[ThresholdResult]
    cases: list[GateCase]
    replays: list[str | None]
    scenario_path: str | None
    duration: float

    @property
    def passed(self) -> bool:
        """Tell whether every case passed."""
        return all(case.passed for case in self.cases)

    @property
    def failures(self) -> list[GateCase]:
        """Return the cases that failed."""
        return [case for case in self.cases if not case.passed]

    @property
    def document(self) -> dict[str, object]:
        """Return the JSON report: the run's report with a ``thresholds`` section.

        Its ``passed`` is the gate's verdict; each target's ``passed`` stays the
        verdict on its expectation alone.
        """
        thresholds = [
            {
                "target": result.target,
                "check": result.threshold.check,
                "metric": result.threshold.metric,
                "operator": result.threshold.operator,
                "limit": result.threshold.limit,
                "value": result.value,
                "passed": result.passed,
                "message": result.message,
                "replay": replay,
                "source": result.threshold.source,
            }
            for result, replay in zip(self.thresholds, self.replays, strict=True)
        ]
        return {**self.report.document, "passed": self.passed, "thresholds": thresholds}


def describe_expectation(expectation: Expectation) -> str:
    """Return an expectation in words, such as ``must show hang, may show lost``."""
    parts = []
    if expectation.expect:
        parts.append("must show " + ", ".join(sorted(expectation.expect)))
    if expectation.allow:
        parts.append("may show " + ", ".join(sorted(expectation.allow)))
    return "; ".join(parts) if parts else "no finding"


def judge_gate(
    record: RunRecord,
    thresholds: Sequence[Threshold],
    *,
    version: str,
    scenario_path: str | None,
) -> GateResult:
    """Judge ``record`` against ``thresholds`` and its targets' expectations."""
    scenario = record.scenario
    report = report_run(record, version=version, scenario_path=scenario_path)
    replay = functools.partial(replay_command, scenario, scenario_path=scenario_path)
    witnesses = pick_witnesses(record.results)

    def replay_of(target: str, witness: str | None) -> str | None:
        chosen = witnesses.get(target, {}).get(witness) if witness else None
        return replay(target, chosen.seed, chosen.cycle) if chosen else None

    results = evaluate_thresholds(thresholds, report.summaries)
    replays = [
        None
        if result.passed
        else replay_of(result.target, METRICS[result.threshold.metric].witness)
        for result in results
    ]
    cases = []
    for name, summary in report.summaries.items():
        expectation = scenario.expectation_for(name)
        problems = report.problems[name]
        unexpected = _unexpected_findings(summary, expectation)
        cases.append(
            GateCase(
                target=name,
                name=f"expectation: {describe_expectation(expectation)}",
                kind=EXPECTATION,
                passed=not problems,
                message="; ".join(problems) or _findings_in_words(summary),
                replay=replay_of(name, unexpected[0]) if unexpected else None,
            )
        )
        for result, command in zip(results, replays, strict=True):
            if result.target == name:
                cases.append(
                    GateCase(
                        target=name,
                        name=result.threshold.check,
                        kind=THRESHOLD,
                        passed=result.passed,
                        message=result.message,
                        replay=command,
                        source=result.threshold.source,
                    )
                )
    if record.interrupted:
        message = "a signal stopped the run, so its cycles are incomplete"
        cases.append(GateCase("run", "finished without interruption", INTERRUPTION, False, message))
    finished = record.finished_at or record.started_at
    duration = (finished - record.started_at).total_seconds()
    return GateResult(report, results, cases, replays, scenario_path, duration)


def _unexpected_findings(summary: TargetSummary, expectation: Expectation) -> list[str]:
    tolerated = expectation.expect | expectation.allow
    return [f for f, count in summary.findings.items() if count and f not in tolerated]


def _findings_in_words(summary: TargetSummary) -> str:
    counts = [f"{finding} in {count}" for finding, count in summary.findings.items() if count]
    if not counts:
        return f"no finding in {summary.cycles} cycles"
    return f"{', '.join(counts)} of {summary.cycles} cycles"
