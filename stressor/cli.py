"""The commands: ``targets``, ``run``, ``gate``, ``soak`` and ``replay``.

Exit statuses: 0 when every target met its expectation and 1 when any did not.
Invalid usage or configuration exits with 2. When SIGINT or SIGTERM ends a run, the
status is 128 plus the signal number, and ``run`` still writes the report of the
finished cycles. ``gate``
also fails with 1 when a threshold fails, and exits with 3 when the stressor
itself failed (``options.GATE_EXIT_STATUSES``).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys
import urllib.parse
from collections.abc import Sequence

import prometheus_client

from stressor import __version__
from stressor.engine import check_inotify_capacity
from stressor.gate import judge_gate
from stressor.gate_reports import junit_xml, markdown_summary, write_file
from stressor.logs import RepeatFilter, configure_logging
from stressor.options import (
    UsageError,
    build_parser,
    scenario_and_file_from_args,
    scenario_from_args,
)
from stressor.record import RunRecord
from stressor.replay import ShrinkOptions, replay_cycle, shrink_findings
from stressor.reports import (
    check_report_path,
    check_writable_directory,
    format_table,
    report_run,
    write_report,
)
from stressor.scenario import ConfigError, Scenario
from stressor.session import Session, SessionOptions, run_session_sync, run_until_signal
from stressor.targets import BUILTIN_TARGETS
from stressor.targets.command import RECIPES
from stressor.thresholds import Threshold, check_threshold_targets

log = logging.getLogger("stressor")

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STRESSOR_FAILED = 3


def _print_targets() -> int:
    for target in BUILTIN_TARGETS.values():
        print(f"{target.name:<18} {target.description}")
    for name, known in RECIPES.items():
        print(f"{name:<18} recipe, {known.description}")
    return EXIT_PASSED


def _finish(
    session: Session, report_path: str | None, scenario_path: str | None, shrink_budget: float
) -> bool:
    """Print the summary table, write the report and return whether the run passed.

    With a shrink budget the report is written first and again once the findings are
    shrunk, so a signal during the shrinking keeps the run's report.
    """
    record = session.record
    report = report_run(record, version=__version__, scenario_path=scenario_path)
    print(format_table(report.summaries, report.problems))
    for name, problems in report.problems.items():
        for problem in problems:
            print(f"FAIL {problem}")
        if problems:
            _print_replays(report.document, name)
    verdict = "passed" if report.passed else "FAILED"
    seed = record.scenario.seed
    if record.interrupted:
        verdict += " (interrupted by a signal before the run ended)"
    print(f"seed {seed}: {verdict}")
    if report_path:
        write_report(report_path, report.document)
    if shrink_budget > 0 and not record.interrupted:
        signal_number = _add_shrunk(report.document, record, shrink_budget)
        if report_path:
            write_report(report_path, report.document)
        if signal_number is not None:
            session.signal_number = signal_number
    return report.passed


def _print_replays(document: dict[str, object], target: str) -> None:
    """Print the replay command of the first cycle of each finding of ``target``."""
    targets = document["targets"]
    assert isinstance(targets, dict)
    for outcome, first in targets[target].get("first_findings", {}).items():
        print(f"  first {outcome}: {first['replay']}")


def _add_shrunk(document: dict[str, object], record: RunRecord, budget: float) -> int | None:
    """Shrink the run's findings and add the smallest schedules to the report.

    Returns the number of the signal that stopped the shrinking, or None.
    """
    shrunk, signal_number = run_until_signal(
        shrink_findings, record.scenario, record.results, budget
    )
    if shrunk is None:
        print("shrinking stopped by a signal; the report has no smallest schedules")
        return signal_number
    targets = document["targets"]
    assert isinstance(targets, dict)
    for target, entries in shrunk.items():
        targets[target]["shrunk"] = entries
        for entry in entries:
            print(
                f"shrunk {entry['outcome']} of {target} (seed {entry['seed']},"
                f" cycle {entry['cycle']}): smallest {json.dumps(entry['smallest'])}"
            )
    return None


def _check_findings_dir(path: str) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError("--findings-dir", path, "is a file; give a directory path")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError("--findings-dir", path, f"cannot create it ({reason})") from None
    check_writable_directory(path, "--findings-dir", path)


def _check_pushgateway(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            "--pushgateway", url, "give an http or https URL such as http://127.0.0.1:9091"
        )


def _push(url: str, session: Session) -> None:
    try:
        prometheus_client.push_to_gateway(url, job="stressor", registry=session.registry)
    except OSError as error:
        log.error("pushing metrics to the Pushgateway at %s failed: %s", url, error)


def _run_command(args: argparse.Namespace, scenario: Scenario) -> int:
    if args.report:
        check_report_path(args.report)
    if args.textfile:
        check_report_path(args.textfile, "--textfile")
    if args.pushgateway:
        _check_pushgateway(args.pushgateway)
    if not 0 <= args.shrink_budget <= 86400:
        raise ConfigError("--shrink-budget", args.shrink_budget, "must be 0 to 86400 seconds")
    print(f"stressor {__version__}: seed {scenario.seed}, targets {', '.join(scenario.targets)}")
    options = SessionOptions(
        progress=not args.quiet, scenario_path=args.scenario, textfile=args.textfile
    )
    session = run_session_sync(scenario, options)
    passed = _finish(session, args.report, args.scenario, args.shrink_budget)
    if args.pushgateway:
        _push(args.pushgateway, session)
    if session.signal_number is not None:
        return 128 + session.signal_number
    return EXIT_PASSED if passed else EXIT_FAILED


def _gate_command(args: argparse.Namespace) -> int:
    """Check the gate's scenario and report paths, then run it; a stressor failure exits 3."""
    if not args.scenario:
        raise ConfigError(
            "SCENARIO", None, "give the scenario file that declares the gate's [[thresholds]]"
        )
    scenario, loaded = scenario_and_file_from_args(args)
    if not loaded.thresholds:
        raise ConfigError(
            f"{args.scenario}: thresholds",
            None,
            'declare at least one, e.g. [[thresholds]] with check = "hangs == 0"',
        )
    check_threshold_targets(loaded.thresholds, scenario.targets)
    outputs = {"--report": args.report, "--junit": args.junit, "--markdown": args.markdown}
    for option, path in outputs.items():
        if path:
            check_report_path(path, option)
    try:
        return _run_gate(args, scenario, loaded.thresholds)
    except ConfigError:
        raise
    except Exception as error:
        log.debug("the gate failed", exc_info=error)
        print(
            f"stressor: error: the stressor itself failed: {_describe_failure(error)}"
            " (--log-level debug shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_STRESSOR_FAILED


def _run_gate(args: argparse.Namespace, scenario: Scenario, thresholds: list[Threshold]) -> int:
    targets = ", ".join(scenario.targets)
    print(f"stressor {__version__}: gate {args.scenario}, seed {scenario.seed}, targets {targets}")
    options = SessionOptions(progress=not args.quiet, scenario_path=args.scenario)
    session = run_session_sync(scenario, options)
    result = judge_gate(
        session.record, thresholds, version=__version__, scenario_path=args.scenario
    )
    print(format_table(result.report.summaries, result.report.problems))
    for case in result.cases:
        print(f"{'pass' if case.passed else 'FAIL'}  {case.target}: {case.name}: {case.message}")
        if case.replay and not case.passed:
            print(f"      replay: {case.replay}")
    if args.report:
        write_report(args.report, result.document)
    if args.junit:
        write_file(args.junit, junit_xml(result))
    if args.markdown:
        write_file(args.markdown, markdown_summary(result).encode())
    verdict = "passed" if result.passed else "FAILED"
    failed = f"{len(result.failures)} of {len(result.cases)} checks failed"
    print(f"gate {verdict}: {failed}, seed {scenario.seed}")
    if session.signal_number is not None:
        return 128 + session.signal_number
    return EXIT_PASSED if result.passed else EXIT_FAILED


def _describe_failure(error: BaseException) -> str:
    """Return the type and message of ``error``, or of each error in an exception group."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe_failure(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}"


def _soak_command(args: argparse.Namespace, scenario: Scenario, repeat_filter: RepeatFilter) -> int:
    if args.max_findings < 1:
        raise ConfigError("--max-findings", args.max_findings, "must be an integer of 1 or more")
    if args.textfile:
        check_report_path(args.textfile, "--textfile")
    if args.findings_dir:
        _check_findings_dir(args.findings_dir)

    options = SessionOptions(
        metrics_host=args.metrics_host,
        progress=False,
        findings_dir=args.findings_dir,
        max_findings=args.max_findings,
        scenario_path=args.scenario,
        textfile=args.textfile,
        keep_results=False,
    )
    log.info(
        "soak started: seed %d, targets %s, metrics port %d",
        scenario.seed,
        ",".join(scenario.targets),
        scenario.metrics_port,
    )
    session = run_session_sync(scenario, options, repeat_filter)

    state = session.state
    for target in scenario.targets:
        counts = state.outcomes.get(target, collections.Counter())
        unexpected = {o: n for (t, o), n in state.unexpected.items() if t == target}
        log.info(
            "soak summary: target %s, %d cycles, outcomes %s, unexpected findings %s",
            target,
            sum(counts.values()),
            dict(counts) or "{}",
            unexpected or "none",
        )

    failed = bool(state.unexpected)
    log.info("soak stopped after %d cycles: %s", state.finished, "FAILED" if failed else "passed")
    if session.signal_number is not None:
        return 128 + session.signal_number
    return EXIT_FAILED if failed else EXIT_PASSED


def _replay_command(args: argparse.Namespace, scenario: Scenario) -> int:
    if args.target is None or len(args.target) != 1:
        raise ConfigError("--target", args.target, "name exactly one target to replay")
    if args.cycle < 0:
        raise ConfigError("--cycle", args.cycle, "must be an integer of 0 or more")
    if not 1 <= args.repeat <= 100_000:
        raise ConfigError("--repeat", args.repeat, "must be an integer from 1 to 100000")
    if not 1 <= args.attempts <= 1000:
        raise ConfigError("--attempts", args.attempts, "must be an integer from 1 to 1000")
    if not 0 < args.shrink_budget <= 86400:
        raise ConfigError("--shrink-budget", args.shrink_budget, "must be 0 to 86400 seconds")
    if scenario.backend == "fake" and not args.shrink:
        # Each attempt runs in virtual time on fresh fake files: an exact replay.
        # Imported here, so that pyfakefs loads only for the fake backend.
        from stressor.exact import replay_exactly

        exact_problems = replay_exactly(scenario, args.target[0], args.cycle, args.repeat)
        return EXIT_FAILED if exact_problems else EXIT_PASSED
    check_inotify_capacity(1)
    shrinking = ShrinkOptions(args.attempts, args.shrink_budget) if args.shrink else None
    problems, signal_number = run_until_signal(
        replay_cycle, scenario, args.target[0], args.cycle, args.repeat, shrinking
    )
    if signal_number is not None:
        return 128 + signal_number
    return EXIT_FAILED if problems else EXIT_PASSED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    # The ``_created`` series of every counter would double the series count, and no
    # dashboard or rule reads them.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "targets":
            return _print_targets()
        if args.command not in ("run", "gate", "soak", "replay"):
            parser.print_help()
            return EXIT_USAGE
        default_level = "info" if args.command == "soak" else "warning"
        repeat_filter = configure_logging(args.log_level or default_level, args.log_format)
        if args.command == "replay" and args.seed is None:
            raise ConfigError("--seed", None, "give the seed of the run to replay")
        if args.command == "gate":
            return _gate_command(args)
        scenario = scenario_from_args(args)
        if args.command == "run":
            return _run_command(args, scenario)
        if args.command == "soak":
            return _soak_command(args, scenario, repeat_filter)
        return _replay_command(args, scenario)
    except (UsageError, ConfigError) as error:
        print(f"stressor: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"stressor: error: {error}", file=sys.stderr)
        return EXIT_USAGE
