"""Reports of a finished run: the JSON report and the summary table."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
from collections.abc import Callable, Mapping

from stressor.judge import judge
from stressor.record import RunRecord
from stressor.replay import replay_command
from stressor.scenario import ConfigError
from stressor.summary import TargetSummary, quantiles, summarize

REPORT_FORMAT = 1


ReplayCommand = Callable[[str, int, int], str]


def target_report(
    summary: TargetSummary, problems: list[str], replay: ReplayCommand
) -> dict[str, object]:
    """Return the JSON-ready report of one target; ``replay`` builds each hang's command."""
    return {
        "cycles": summary.cycles,
        "passed": not problems,
        "problems": problems,
        "outcomes": dict(summary.outcomes),
        "findings": dict(summary.findings),
        "window_hits": summary.window_hits,
        "lines": {
            "written": summary.lines_written,
            "read": summary.lines_read,
            "lost": summary.lines_lost,
            "duplicated": summary.lines_duplicated,
            "reordered": summary.lines_reordered,
            "torn": summary.lines_torn,
            "indeterminate": summary.lines_indeterminate,
        },
        "delivery_latency_seconds": quantiles(summary.delivery_latencies),
        "exit_latency_seconds": quantiles(summary.exit_latencies),
        "hangs": [
            {
                "seed": hang.seed,
                "cycle": hang.cycle,
                "faults": list(hang.faults),
                "detail": hang.detail,
                "replay": replay(summary.target, hang.seed, hang.cycle),
            }
            for hang in summary.hangs
        ],
        "first_findings": {
            outcome: {
                "seed": first.seed,
                "cycle": first.cycle,
                "faults": list(first.faults),
                "detail": first.detail,
                "replay": replay(summary.target, first.seed, first.cycle),
            }
            for outcome, first in sorted(summary.first_findings.items())
        },
    }


def build_report(
    *,
    run: Mapping[str, object],
    summaries: Mapping[str, TargetSummary],
    problems: Mapping[str, list[str]],
    replay: ReplayCommand,
) -> dict[str, object]:
    """Return the whole JSON report: the fields of ``run`` first, then one entry per target."""
    targets = {
        name: target_report(summary, problems[name], replay) for name, summary in summaries.items()
    }
    passed = all(report["passed"] for report in targets.values()) and not run.get("interrupted")
    return {"format": REPORT_FORMAT, **run, "passed": passed, "targets": targets}


@dataclasses.dataclass(frozen=True)
class RunReport:
    """A finished run judged per target: its summaries, problems and JSON report."""

    summaries: dict[str, TargetSummary]
    problems: dict[str, list[str]]
    document: dict[str, object]

    @property
    def passed(self) -> bool:
        """Tell whether every target met its expectation and the run was not interrupted."""
        return bool(self.document["passed"])


def report_run(
    record: RunRecord,
    *,
    version: str,
    scenario_path: str | None,
    replay: ReplayCommand | None = None,
    tolerate_hint: str | None = None,
) -> RunReport:
    """Summarise and judge ``record``; ``scenario_path`` goes into the replay commands.

    The Python API passes ``replay``, which builds the replay commands instead of
    ``stressor replay``, and ``tolerate_hint`` (see ``judge``) for its own targets.
    """
    scenario = record.scenario
    summaries = summarize(scenario.targets, record.results)
    hint = {"tolerate_hint": tolerate_hint} if tolerate_hint else {}
    problems = {
        name: judge(summaries[name], scenario.expectation_for(name), **hint) for name in summaries
    }
    if replay is None:
        replay = functools.partial(replay_command, scenario, scenario_path=scenario_path)
    run_fields = {
        "stressor_version": version,
        "seed": scenario.seed,
        "started_at": record.started_at.isoformat(),
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "interrupted": record.interrupted,
    }
    document = build_report(
        run=run_fields,
        summaries=summaries,
        problems=problems,
        replay=replay,
    )
    return RunReport(summaries, problems, document)


def check_report_path(path: str, option: str = "--report") -> None:
    """Raise ``ConfigError`` naming ``option`` now if ``path`` could not be written later.

    It creates and removes a temporary file next to ``path``, because permission
    bits alone do not tell (root may write anywhere, except in /proc and the like).
    """
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ConfigError(option, path, "is a directory; give a file path")
    if not os.path.isdir(directory):
        raise ConfigError(option, path, f"directory {directory} does not exist; create it")
    check_writable_directory(directory, option, path)


def check_writable_directory(directory: str, option: str, value: str) -> None:
    """Raise ``ConfigError`` unless a file can be created in ``directory``."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".stressor-probe-", dir=directory)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(
            option, value, f"cannot write in {directory} ({reason}); choose a writable path"
        ) from None
    os.close(fd)
    os.unlink(probe)


def write_report(path: str, report: Mapping[str, object]) -> None:
    """Write ``report`` as JSON to ``path`` atomically, so a reader never sees half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".stressor-report-", dir=directory)
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(report, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.2f}"


def format_table(summaries: Mapping[str, TargetSummary], problems: Mapping[str, list[str]]) -> str:
    """Return the summary table: one row per target, latencies in milliseconds."""
    header = (
        "target", "cycles", "ok", "hang", "lost", "dup", "reorder", "torn", "crash", "leak",
        "window", "deliv p50", "deliv p99", "exit p50", "exit p99", "result",
    )  # fmt: skip
    rows = [header]
    for name, summary in summaries.items():
        delivery = quantiles(summary.delivery_latencies)
        exit_ = quantiles(summary.exit_latencies)
        outcomes = summary.outcomes
        rows.append(
            (
                name,
                str(summary.cycles),
                str(outcomes["ok"]),
                str(outcomes["hang"]),
                str(outcomes["lost"]),
                str(outcomes["duplicate"]),
                str(outcomes["reorder"]),
                str(outcomes["torn"]),
                str(outcomes["crash"]),
                str(outcomes["leak"]),
                str(summary.window_hits),
                _milliseconds(delivery["p50"]),
                _milliseconds(delivery["p99"]),
                _milliseconds(exit_["p50"]),
                _milliseconds(exit_["p99"]),
                "pass" if not problems[name] else "FAIL",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append(
        "latencies in ms; window = cycles whose fault landed between writer exit and watch removal"
    )
    return "\n".join(lines)
