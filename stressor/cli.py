"""The command line: ``stressor targets`` and ``stressor run``.

Exit statuses of ``run``: 0 when every target met its expectation, 1 when any did
not, 2 for invalid usage or configuration, 128 plus the signal number when SIGINT
or SIGTERM ended the run (the report of the finished cycles is still written).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import logging
import signal
import sys
from collections.abc import Sequence

import trio
from prometheus_client import CollectorRegistry

from stressor import __version__
from stressor.engine import RunRecord, run_stress
from stressor.exporter import serve_metrics
from stressor.judge import judge
from stressor.metrics import RunMetrics
from stressor.progress import Progress
from stressor.reports import build_report, check_report_path, format_table, write_report
from stressor.scenario import (
    DEFAULT_METRICS_PORT,
    ConfigError,
    Scenario,
    build_expectations,
    new_seed,
    parse_outcome_option,
    parse_points,
)
from stressor.scenario_file import ScenarioFile, load_scenario_file
from stressor.summary import summarize
from stressor.targets import BUILTIN_TARGETS

log = logging.getLogger("stressor")

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Invalid usage, reported as one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports errors in one line, with a did-you-mean hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments: "):
            unknown = message.split(": ", 1)[1].split()[0]
            known = _option_strings(self)
            close = difflib.get_close_matches(unknown.split("=")[0], known, n=1)
            if close:
                message += f" (did you mean {close[0]}?)"
        raise UsageError(f"{message}; see `{self.prog} --help`")


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Return every option string of ``parser`` and of its subcommands."""
    options = []
    for action in parser._actions:
        options += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                options += _option_strings(subparser)
    return options


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stressor",
        description="Fault-injection stress runs for log followers.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"stressor {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # Abbreviated options are rejected, so a typo such as --cycle gets a hint
    # instead of silently meaning --cycles.
    commands.add_parser(
        "targets", help="list the built-in targets, one per line", allow_abbrev=False
    )
    run = commands.add_parser(
        "run",
        help="run a bounded stress (the embedded default scenario without options)",
        description="Run cycles against followers and judge them against their expectations.",
        allow_abbrev=False,
    )
    run.add_argument(
        "scenario", nargs="?", metavar="SCENARIO.toml",
        help="scenario file; options given on the command line override it",
    )  # fmt: skip
    _add_run_options(run)
    return parser


def _add_run_options(run: argparse.ArgumentParser) -> None:
    what = run.add_argument_group("what to stress")
    what.add_argument(
        "--target", action="append", metavar="NAME",
        help="a target to stress; repeat for several (default: all built-in targets)",
    )  # fmt: skip
    what.add_argument("--seed", type=int, help="run seed (default: a random one, printed)")
    how_long = what.add_mutually_exclusive_group()
    how_long.add_argument("--cycles", type=int, metavar="N", help="cycles per target")
    how_long.add_argument(
        "--duration", type=float, metavar="SECONDS",
        help="start new cycles for this many seconds (default: 12)",
    )  # fmt: skip
    what.add_argument("--concurrency", type=int, metavar="K", help="cycles at once (default: 16)")

    cycle = run.add_argument_group("each cycle")
    cycle.add_argument("--lines", type=int, metavar="N", help="lines per writer (default: 10)")
    cycle.add_argument(
        "--max-gap", type=float,  metavar="SECONDS",
        help="largest pause before each line, drawn uniformly (default: 0.0005)",
    )  # fmt: skip
    cycle.add_argument(
        "--no-catch-up", dest="catch_up", action="store_false", default=None,
        help="let the writer exit at once instead of waiting until the follower"
        " delivered its lines (the wait is bounded by --deadline)",
    )  # fmt: skip
    cycle.add_argument(
        "--settle", type=float,  metavar="SECONDS",
        help="pause after the last line (and the catch-up) before the writer exits"
        " (default: 0.001)",
    )  # fmt: skip
    cycle.add_argument(
        "--point", action="append", metavar="POINT",
        help="hook point for late writes: after-exit, before-remove or after-remove;"
        " repeat for several, one is drawn per cycle (default: all three)",
    )  # fmt: skip
    cycle.add_argument(
        "--fault-probability", type=float,  metavar="P",
        help="chance that a cycle gets a late write (default: 1)",
    )  # fmt: skip
    cycle.add_argument(
        "--deadline", type=float,  metavar="SECONDS",
        help="a follower without progress this long after the writer's exit is hung (default: 1)",
    )  # fmt: skip
    cycle.add_argument(
        "--max-wait", type=float,  metavar="SECONDS",
        help="a follower not done this long after the writer's exit is hung (default: 10)",
    )  # fmt: skip

    judging = run.add_argument_group("expectations and output")
    judging.add_argument(
        "--expect", action="append", default=[], metavar="NAME=OUTCOME",
        help="an outcome the target must show at least once (a positive control)",
    )  # fmt: skip
    judging.add_argument(
        "--allow", action="append", default=[], metavar="NAME=OUTCOME",
        help="an outcome the target may show without failing the run",
    )  # fmt: skip
    judging.add_argument("--report", metavar="FILE.json", help="write the JSON report here")
    judging.add_argument(
        "--metrics-port", type=int,  metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT, 0 for none"
        f" (default: {DEFAULT_METRICS_PORT})",
    )  # fmt: skip
    judging.add_argument("--quiet", action="store_true", help="print no live progress")
    judging.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"],
        help="log level on standard error (default: warning; info logs every finding)",
    )  # fmt: skip


# Scenario field -> parsed option attribute, for options that map one to one.
_OPTION_FIELDS = {
    "concurrency": "concurrency",
    "seed": "seed",
    "lines": "lines",
    "max_gap": "max_gap",
    "catch_up": "catch_up",
    "settle": "settle",
    "fault_probability": "fault_probability",
    "deadline": "deadline",
    "max_wait": "max_wait",
    "metrics_port": "metrics_port",
}


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """Build the run's scenario: defaults, then the scenario file, then the options.

    Raises:
        ConfigError: an option or a key of the file is invalid.
    """
    loaded = load_scenario_file(args.scenario) if args.scenario else ScenarioFile()
    settings = dict(loaded.settings)
    sources = dict(loaded.sources)

    def override(field: str, value: object) -> None:
        settings[field] = value
        sources.pop(field, None)

    for field, attribute in _OPTION_FIELDS.items():
        value = getattr(args, attribute)
        if value is not None:
            override(field, value)
    if args.target:
        override("targets", tuple(args.target))
    if args.cycles is not None:
        override("cycles", args.cycles)
        override("duration", None)
    elif args.duration is not None:
        override("duration", args.duration)
        override("cycles", None)
    elif "cycles" in settings and "duration" not in settings:
        settings["duration"] = None
    if args.point:
        override("points", parse_points(args.point))
    if "seed" not in settings:
        settings["seed"] = new_seed()

    targets = tuple(settings.get("targets", BUILTIN_TARGETS))
    label = f"{args.scenario}: expect/allow" if args.scenario else "--expect/--allow"
    layers = [(loaded.expect, loaded.allow, label)]
    expect = [parse_outcome_option("--expect", text) for text in args.expect]
    allow = [parse_outcome_option("--allow", text) for text in args.allow]
    layers.append((expect, allow, "--expect/--allow"))
    settings["expectations"] = build_expectations(targets, layers)
    return Scenario(**settings, sources=sources)


@dataclasses.dataclass
class _Interruption:
    signal_number: int | None = None


async def _stop_on_signal(scope: trio.CancelScope, interruption: _Interruption) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for number in signals:
            log.warning("received %s: stopping the run", signal.Signals(number).name)
            interruption.signal_number = number
            scope.cancel()


async def _run(scenario: Scenario, quiet: bool) -> tuple[RunRecord, _Interruption]:
    """Serve metrics, show progress and run the stress until it ends or a signal stops it."""
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)
    progress = Progress()
    record = RunRecord(scenario)
    interruption = _Interruption()
    run_scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, run_scope, interruption)
        if scenario.metrics_port:
            try:
                await nursery.start(
                    functools.partial(serve_metrics, registry, port=scenario.metrics_port)
                )
            except OSError as error:
                nursery.cancel_scope.cancel()
                raise _bind_error(scenario.metrics_port, error) from None
        if not quiet:
            nursery.start_soon(progress.run)
        with run_scope:
            await run_stress(scenario, record, [metrics, progress])
        record.interrupted = interruption.signal_number is not None
        nursery.cancel_scope.cancel()
    return record, interruption


def _bind_error(port: int, error: OSError) -> ConfigError:
    reason = error.strerror or str(error)
    return ConfigError(
        "--metrics-port", port, f"cannot listen on 127.0.0.1 ({reason}); choose another port or 0"
    )


def _run_sync(scenario: Scenario, quiet: bool) -> tuple[RunRecord, _Interruption]:
    """Run ``_run`` in trio, unwrapping a configuration error from its exception group."""
    try:
        return trio.run(_run, scenario, quiet)
    except BaseExceptionGroup as group:
        config_errors = group.subgroup(ConfigError)
        if config_errors is None:
            raise
        error = config_errors.exceptions[0]
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise error from None


def _finish(record: RunRecord, report_path: str | None) -> bool:
    """Print the summary table, write the report and return whether the run passed."""
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "targets":
            for target in BUILTIN_TARGETS.values():
                print(f"{target.name:<15} {target.description}")
            return EXIT_PASSED
        if args.command != "run":
            parser.print_help()
            return EXIT_USAGE
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        scenario = scenario_from_args(args)
        if args.report:
            check_report_path(args.report)
        print(
            f"stressor {__version__}: seed {scenario.seed}, targets {', '.join(scenario.targets)}"
        )
        record, interruption = _run_sync(scenario, args.quiet)
        passed = _finish(record, args.report)
    except (UsageError, ConfigError) as error:
        print(f"stressor: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"stressor: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if interruption.signal_number is not None:
        return 128 + interruption.signal_number
    return EXIT_PASSED if passed else EXIT_FAILED
