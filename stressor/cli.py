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
import tempfile
from collections.abc import Sequence

import prometheus_client
import trio

from stressor import __version__
from stressor.cycle import CycleLimits, run_cycle
from stressor.engine import check_inotify_capacity
from stressor.judge import judge
from stressor.logs import RepeatFilter, configure_logging
from stressor.options import UsageError, build_parser, scenario_from_args
from stressor.reports import build_report, check_report_path, format_table, write_report
from stressor.scenario import ConfigError, Scenario
from stressor.schedule import make_schedule
from stressor.session import Session, SessionOptions, run_session_sync
from stressor.summary import summarize
from stressor.targets import BUILTIN_TARGETS, get_target

log = logging.getLogger("stressor")

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _print_targets() -> int:
    for target in BUILTIN_TARGETS.values():
        print(f"{target.name:<15} {target.description}")
    return EXIT_PASSED


def _finish(session: Session, report_path: str | None) -> bool:
    """Print the summary table, write the report and return whether the run passed."""
    record = session.record
    scenario = record.scenario
    summaries = summarize(scenario.targets, record.results)
    problems = {name: judge(summaries[name], scenario.expectation_for(name)) for name in summaries}
    run_fields = {
        "stressor_version": __version__,
        "seed": scenario.seed,
        "started_at": record.started_at.isoformat(),
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "interrupted": record.interrupted,
    }
    report = build_report(run=run_fields, summaries=summaries, problems=problems)
    print(format_table(summaries, problems))
    for name in summaries:
        for problem in problems[name]:
            print(f"FAIL {problem}")
    verdict = "passed" if report["passed"] else "FAILED"
    print(f"seed {scenario.seed}: {verdict}" + (" (interrupted)" if record.interrupted else ""))
    if report_path:
        write_report(report_path, report)
    return bool(report["passed"])


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
    passed = _finish(session, args.report)
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


async def _replay(scenario: Scenario, target_name: str, cycle: int, repeat: int) -> list[str]:
    schedule = make_schedule(
        scenario.seed,
        cycle,
        lines=scenario.lines,
        max_gap=scenario.max_gap,
        catch_up=scenario.catch_up,
        settle=scenario.settle,
        points=scenario.points,
        fault_probability=scenario.fault_probability,
    )
    limits = CycleLimits(deadline=scenario.deadline, max_wait=scenario.max_wait)
    target = get_target(target_name)
    expectation = scenario.expectation_for(target_name)
    problems = []
    print(f"replaying {target_name} seed {scenario.seed} cycle {cycle}: faults", end=" ")
    print(", ".join(fault.describe() for fault in schedule.faults) or "none")
    with tempfile.TemporaryDirectory(prefix="stressor-") as directory:
        for attempt in range(1, repeat + 1):
            result = await run_cycle(target, schedule, directory, limits)
            detail = f" ({result.detail})" if result.detail else ""
            print(f"attempt {attempt}: {result.outcome}{detail}")
            tolerated = expectation.expect | expectation.allow
            problems += sorted(result.findings - tolerated)
    return problems


def _replay_command(args: argparse.Namespace, scenario: Scenario) -> int:
    if args.target is None or len(args.target) != 1:
        raise ConfigError("--target", args.target, "name exactly one target to replay")
    if args.cycle < 0:
        raise ConfigError("--cycle", args.cycle, "must be an integer of 0 or more")
    if not 1 <= args.repeat <= 100_000:
        raise ConfigError("--repeat", args.repeat, "must be an integer from 1 to 100000")
    check_inotify_capacity(1)
    problems = trio.run(_replay, scenario, args.target[0], args.cycle, args.repeat)
    return EXIT_FAILED if problems else EXIT_PASSED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
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
