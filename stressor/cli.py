"""The commands: ``targets``, ``run``, ``soak`` and ``replay``.

Exit statuses: 0 when every target met its expectation, 1 when any did not, 2 for
invalid usage or configuration, 128 plus the signal number when SIGINT or SIGTERM
ended the run (``run`` still writes the report of the finished cycles).
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
from collections.abc import Sequence

import prometheus_client
import trio

from stressor import __version__
from stressor.engine import check_inotify_capacity
from stressor.logs import RepeatFilter, configure_logging
from stressor.options import UsageError, build_parser, scenario_from_args
from stressor.replay import replay_cycle
from stressor.reports import check_report_path, format_table, report_run, write_report
from stressor.scenario import ConfigError, Scenario
from stressor.session import Session, SessionOptions, run_session_sync
from stressor.targets import BUILTIN_TARGETS

log = logging.getLogger("stressor")

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _print_targets() -> int:
    for target in BUILTIN_TARGETS.values():
        print(f"{target.name:<15} {target.description}")
    return EXIT_PASSED


def _finish(session: Session, report_path: str | None, scenario_path: str | None) -> bool:
    """Print the summary table, write the report and return whether the run passed."""
    record = session.record
    report = report_run(record, version=__version__, scenario_path=scenario_path)
    print(format_table(report.summaries, report.problems))
    for problems in report.problems.values():
        for problem in problems:
            print(f"FAIL {problem}")
    verdict = "passed" if report.passed else "FAILED"
    seed = record.scenario.seed
    print(f"seed {seed}: {verdict}" + (" (interrupted)" if record.interrupted else ""))
    if report_path:
        write_report(report_path, report.document)
    return report.passed


def _push(url: str, session: Session) -> None:
    try:
        prometheus_client.push_to_gateway(url, job="stressor", registry=session.registry)
    except OSError as error:
        log.error("pushing metrics to the Pushgateway at %s failed: %s", url, error)


def _run_command(args: argparse.Namespace, scenario: Scenario) -> int:
    if args.report:
        check_report_path(args.report)
    print(f"stressor {__version__}: seed {scenario.seed}, targets {', '.join(scenario.targets)}")
    options = SessionOptions(
        progress=not args.quiet, scenario_path=args.scenario, textfile=args.textfile
    )
    session = run_session_sync(scenario, options)
    passed = _finish(session, args.report, args.scenario)
    if args.pushgateway:
        _push(args.pushgateway, session)
    if session.signal_number is not None:
        return 128 + session.signal_number
    return EXIT_PASSED if passed else EXIT_FAILED


def _soak_command(args: argparse.Namespace, scenario: Scenario, repeat_filter: RepeatFilter) -> int:
    if args.max_findings < 1:
        raise ConfigError("--max-findings", args.max_findings, "must be an integer of 1 or more")
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
    check_inotify_capacity(1)
    problems = trio.run(replay_cycle, scenario, args.target[0], args.cycle, args.repeat)
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
        if args.command not in ("run", "soak", "replay"):
            parser.print_help()
            return EXIT_USAGE
        default_level = "info" if args.command == "soak" else "warning"
        repeat_filter = configure_logging(args.log_level or default_level, args.log_format)
        if args.command == "replay" and args.seed is None:
            raise ConfigError("--seed", None, "give the seed of the run to replay")
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
