"""Thresholds of a pre-release gate: checks such as ``hangs == 0`` on each target's summary.

A scenario file declares them as an array of tables::

    [[thresholds]]
    target = "*"                    # every target of the run; the default
    check = "hangs == 0"

    [[thresholds]]
    target = "reference"
    check = "exit_latency.p99 < 0.2"  # seconds

A check is ``METRIC OPERATOR NUMBER``. It is parsed with a regular expression and
compared with the ``operator`` module, never evaluated as Python. ``METRICS`` lists
the metrics; latencies are in seconds.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stressor.results import CRASH, DUPLICATE, HANG, LOST, REORDER, TORN
from stressor.scenario import ConfigError
from stressor.summary import TargetSummary, quantiles
from stressor.witnesses import SLOWEST_DELIVERY, SLOWEST_EXIT

ALL_TARGETS = "*"

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}


@dataclasses.dataclass(frozen=True)
class Metric:
    """A number read from a target's summary.

    Attributes:
        name: the name a check uses, such as ``hangs`` or ``exit_latency.p99``.
        unit: ``cycles``, ``lines`` or ``seconds``.
        read: returns the value, or None when nothing was measured (no latency).
        witness: which cycle to replay when a check on the metric fails: a finding
            such as ``hang`` (its first cycle), ``SLOWEST_EXIT``, ``SLOWEST_DELIVERY``
            or None.
    """

    name: str
    unit: str
    read: Callable[[TargetSummary], float | None]
    witness: str | None = None


def _finding_metric(name: str, finding: str) -> Metric:
    return Metric(name, "cycles", lambda summary: summary.findings.get(finding, 0), finding)


def _lines_metric(name: str, witness: str | None) -> Metric:
    return Metric(name, "lines", lambda summary: getattr(summary, name), witness)


def _latency_metric(kind: str, quantile: str) -> Metric:
    def read(summary: TargetSummary) -> float | None:
        values = summary.exit_latencies if kind == SLOWEST_EXIT else summary.delivery_latencies
        return quantiles(values)[quantile]

    return Metric(f"{kind}.{quantile}", "seconds", read, kind)


def _build_metrics() -> dict[str, Metric]:
    metrics = [
        Metric("cycles", "cycles", lambda summary: summary.cycles),
        Metric("ok", "cycles", lambda summary: summary.outcomes.get("ok", 0)),
        _finding_metric("hangs", HANG),
        _finding_metric("lost", LOST),
        _finding_metric("duplicate", DUPLICATE),
        _finding_metric("reorder", REORDER),
        _finding_metric("torn", TORN),
        _finding_metric("crash", CRASH),
        Metric("window_hits", "cycles", lambda summary: summary.window_hits),
        _lines_metric("lines_written", None),
        _lines_metric("lines_read", None),
        _lines_metric("lines_lost", LOST),
        _lines_metric("lines_duplicated", DUPLICATE),
        _lines_metric("lines_reordered", REORDER),
        _lines_metric("lines_torn", TORN),
    ]
    for kind in (SLOWEST_EXIT, SLOWEST_DELIVERY):
        for quantile in ("p50", "p90", "p99", "max"):
            metrics.append(_latency_metric(kind, quantile))
    return {metric.name: metric for metric in metrics}


METRICS = _build_metrics()

_CHECK = re.compile(r"\s*(?P<metric>[A-Za-z_][\w.]*)\s*(?P<operator>[=!<>]+)\s*(?P<number>\S*)\s*")
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_EXAMPLE = 'write METRIC OPERATOR NUMBER, e.g. "hangs == 0" or "exit_latency.p99 < 0.2"'


@dataclasses.dataclass(frozen=True)
class Threshold:
    """One declared check, for one target or for every target of the run.

    Attributes:
        target: a target's name, or ``ALL_TARGETS``.
        check: the check as written, such as ``hangs == 0``.
        metric: the metric's name, a key of ``METRICS``.
        operator: one of ``OPERATORS``.
        limit: the number the metric is compared with.
        source: where it was declared, such as ``gate.toml: thresholds[0]``.
    """

    target: str
    check: str
    metric: str
    operator: str
    limit: float
    source: str


@dataclasses.dataclass(frozen=True)
class ThresholdResult:
    """A threshold judged on one target's summary.

    Attributes:
        value: the metric's value, or None when nothing was measured.
        message: one sentence: the value, and why the check failed if it did.
    """

    threshold: Threshold
    target: str
    value: float | None
    passed: bool
    message: str


def parse_check(label: str, text: object) -> tuple[str, str, float]:
    """Parse ``METRIC OPERATOR NUMBER`` into its parts; raise ``ConfigError`` naming ``label``."""
    if not isinstance(text, str):
        raise ConfigError(label, text, _EXAMPLE)
    match = _CHECK.fullmatch(text)
    if match is None:
        raise ConfigError(label, text, _EXAMPLE)
    metric, op, number = match.group("metric", "operator", "number")
    if metric not in METRICS:
        close = difflib.get_close_matches(metric, METRICS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            label, text, f"unknown metric {metric!r}; {hint}known metrics: {', '.join(METRICS)}"
        )
    if op not in OPERATORS:
        raise ConfigError(
            label, text, f"unknown operator {op!r}; choose one of {' '.join(OPERATORS)}"
        )
    if not _NUMBER.fullmatch(number):
        unit = METRICS[metric].unit
        raise ConfigError(
            label, text, f"{number!r} is not a number; write the limit in {unit} as a plain number"
        )
    limit = float(number)
    if not math.isfinite(limit):
        raise ConfigError(label, text, "the limit must be a finite number")
    return metric, op, limit


def read_thresholds(path: str, value: Any) -> list[Threshold]:
    """Read the ``[[thresholds]]`` tables of the scenario file at ``path``.

    Raises:
        ConfigError: an entry is not a table, has an unknown key or an invalid check;
            the message names the file and the entry.
    """
    if not isinstance(value, list) or not all(isinstance(entry, Mapping) for entry in value):
        raise ConfigError(
            f"{path}: thresholds", value, "write each threshold as a [[thresholds]] table"
        )
    thresholds = []
    for index, entry in enumerate(value):
        source = f"{path}: thresholds[{index}]"
        for key, item in entry.items():
            if key not in ("target", "check"):
                raise ConfigError(f"{source}.{key}", item, "unknown key; known keys: target, check")
        if "check" not in entry:
            raise ConfigError(f"{source}.check", None, f"missing; {_EXAMPLE}")
        target = entry.get("target", ALL_TARGETS)
        if not isinstance(target, str) or not target:
            raise ConfigError(
                f"{source}.target", target, f'write a target name, or "{ALL_TARGETS}" for all'
            )
        metric, op, limit = parse_check(f"{source}.check", entry["check"])
        check = f"{metric} {op} {_format_number(limit)}"
        thresholds.append(Threshold(target, check, metric, op, limit, source))
    return thresholds


def check_threshold_targets(thresholds: Sequence[Threshold], targets: Sequence[str]) -> None:
    """Raise ``ConfigError`` for a threshold on a target that is not part of the run."""
    for threshold in thresholds:
        if threshold.target != ALL_TARGETS and threshold.target not in targets:
            raise ConfigError(
                f"{threshold.source}.target",
                threshold.target,
                f"the target is not part of the run ({', '.join(targets)});"
                f' name one of them, or "{ALL_TARGETS}" for all',
            )


def evaluate_thresholds(
    thresholds: Sequence[Threshold], summaries: Mapping[str, TargetSummary]
) -> list[ThresholdResult]:
    """Judge each threshold on each target it names, in declaration and then target order."""
    results = []
    for threshold in thresholds:
        names = list(summaries) if threshold.target == ALL_TARGETS else [threshold.target]
        for name in names:
            results.append(_evaluate(threshold, name, summaries[name]))
    return results


def _evaluate(threshold: Threshold, target: str, summary: TargetSummary) -> ThresholdResult:
    metric = METRICS[threshold.metric]
    if summary.cycles == 0 and metric.name != "cycles":
        message = f"no cycle of {target} finished, so {threshold.check} proves nothing"
        return ThresholdResult(threshold, target, None, False, message)
    value = metric.read(summary)
    if value is None:
        if metric.witness == SLOWEST_EXIT:
            message = f"no exit latency was measured, because every cycle of {target} hung"
        else:
            message = f"no delivery latency was measured, because {target} delivered no line"
        return ThresholdResult(threshold, target, None, False, message)
    passed = OPERATORS[threshold.operator](value, threshold.limit)
    measured = f"{metric.name} is {_format_number(value)}"
    if metric.unit == "seconds":
        measured += " s"
    message = measured if passed else f"{measured}, which fails {threshold.check}"
    return ThresholdResult(threshold, target, value, passed, message)


def _format_number(value: float) -> str:
    """Return ``value`` without a trailing ``.0`` for whole numbers, for messages."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}"
